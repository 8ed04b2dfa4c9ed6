package registry

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// node is one `stagegate serve` with its own data directory, ledger, keys,
// certificates and token: a cluster's stagegate when api is set, a
// promotion-only one otherwise.
type node struct {
	name string
	bin  string
	// dir holds config.yaml, tokens.yaml, keys/, certs/ and data/.
	dir        string
	configPath string
	// token is the bearer token of the pipeline identity (group e2e).
	token string
	// url is https://127.0.0.1:<port>.
	url string
	// env is added to the serve process's environment (DOCKER_CONFIG).
	env   []string
	api   *framework.APIServer
	serve *framework.Stagegate
}

// nodeOptions is what differs between the suite's stagegates.
type nodeOptions struct {
	// config is merged over the generated config file: stages,
	// registries, evidenceKeys, registrySource.
	config string
	env    []string
	// api, if set, gets the webhook configuration of this node.
	api *framework.APIServer
}

// newNode generates keys, certificates and a token, writes the config,
// starts serve and, with an API server, installs and waits for the webhook.
// Everything is torn down when t ends.
func newNode(t *testing.T, name string, o nodeOptions) *node {
	t.Helper()
	sg := framework.StartStagegate(t,
		framework.WithName(name),
		framework.WithToken("", "e2e-pipeline-"+name, "e2e"),
		framework.WithEnv(o.env...),
		framework.WithLogLevel("debug"),
		framework.WithConfig("logOrigin: stagegate.dev/e2e/"+name+"\n"),
		framework.WithConfig(o.config))
	n := &node{name: name, bin: sg.Bin, dir: sg.Dir, configPath: sg.ConfigPath, token: sg.Token,
		url: sg.URL, env: o.env, api: o.api, serve: sg}
	if n.api != nil {
		n.installWebhook(t, n.namespace(t, "webhook-ready", "prod"))
	}
	return n
}

func (n *node) certDir() string { return n.serve.CertDir }
func (n *node) caFile() string  { return n.serve.CAFile }

// cosignPub is the public key others trust this stagegate's attestations by.
func (n *node) cosignPub() string { return filepath.Join(n.serve.KeysDir, "cosign.pub") }

// installWebhook applies what `stagegate manifests --webhook-only` prints
// and waits until the API server asks stagegate about a pod in probeNS.
func (n *node) installWebhook(t *testing.T, probeNS string) {
	t.Helper()
	out := n.mustRun(t, "manifests", "--config", n.configPath, "--url", n.url,
		"--ca-file", n.caFile(), "--webhook-only")
	p := filepath.Join(n.dir, "webhook.yaml")
	writeFile(t, p, out, 0o600)
	if _, stderr, err := n.api.Kubectl(t, "apply", "-f", p); err != nil {
		t.Fatalf("%s: kubectl apply webhook configuration: %v\n%s", n.name, err, stderr)
	}
	// The probe digest's registry does not exist: a federating node fails
	// closed on it ("could not decide"), which is stagegate answering all
	// the same.
	probe := pod(probeNS, "probe", "127.0.0.1:1/never/promoted@sha256:"+strings.Repeat("0", 64))
	n.api.WaitForWebhook(t, func() error { return n.create(t, probe, true) }, "stagegate denied", "stagegate could not decide")
}

// run runs the stagegate binary with the node's token and key password.
func (n *node) run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return n.serve.Run(t, args...)
}

func (n *node) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	return n.serve.MustRun(t, args...)
}

// client returns the flags that point a client command at this node.
func (n *node) client(args ...string) []string { return n.serve.ClientFlags(args...) }

// promote promotes ref to each stage in turn with `stagegate promote`.
func (n *node) promote(t testing.TB, ref string, stages ...string) {
	t.Helper()
	for _, st := range stages {
		n.mustRun(t, n.client("promote", ref, "--stage", st, "--reason", "e2e", "--progress", "none", "-o", os.DevNull)...)
	}
}

// toProd are the stages a digest goes through to reach prod.
var toProd = []string{"dev", "test", "stage", "prod"}

func (n *node) httpClient(t testing.TB) *http.Client {
	t.Helper()
	return n.serve.Client(t)
}

// do sends an authenticated request to the promotion API and returns the
// status and body; body, when not nil, is sent as JSON.
func (n *node) do(t testing.TB, method, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, n.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	req.Header.Set("Content-Type", "application/json")
	c := n.httpClient(t)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s: %s %s: %v", n.name, method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

// promoteAPI posts a promotion and returns the status and body.
func (n *node) promoteAPI(t testing.TB, ref, stage string) (int, []byte) {
	t.Helper()
	return n.do(t, http.MethodPost, "/v1/promotions", map[string]any{"image": ref, "stage": stage, "reason": "e2e"})
}

// ledgerEntries returns every entry of the node's ledger.
func (n *node) ledgerEntries(t testing.TB) []ledger.Entry {
	t.Helper()
	status, b := n.do(t, http.MethodGet, "/v1/ledger/entries?start=0&limit=1000", nil)
	if status != http.StatusOK {
		t.Fatalf("%s: GET /v1/ledger/entries: %d: %s", n.name, status, b)
	}
	var page struct {
		Entries []ledger.Entry `json:"entries"`
	}
	if err := json.Unmarshal(b, &page); err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

// entriesOf returns the entries of the ledger about digest.
func (n *node) entriesOf(t testing.TB, digest string) []ledger.Entry {
	t.Helper()
	var out []ledger.Entry
	for _, e := range n.ledgerEntries(t) {
		if e.Digest == digest {
			out = append(out, e)
		}
	}
	return out
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
