package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// suite is the shared environment: one API server, one registry and one
// `stagegate serve` process for every scenario.
type suite struct {
	api *framework.APIServer
	reg *framework.Registry
	// bin is the stagegate binary built from this repository.
	bin string
	// dir holds config.yaml, tokens.yaml, keys/, certs/ and data/.
	dir        string
	configPath string
	// token is the bearer token of the pipeline identity, whose group may
	// promote into every stage.
	token string
	// url is the base URL of the promotion API of the serve process,
	// https://127.0.0.1:<port>; webhookURL that of its webhook listener,
	// which takes only the API server's client certificate (auth).
	url        string
	webhookURL string
	auth       *framework.WebhookClientAuth
	serve      *framework.Stagegate
}

func (s *suite) certDir() string { return s.serve.CertDir }
func (s *suite) caFile() string  { return s.serve.CAFile }

// newSuite starts everything and installs the webhook configuration; all is
// torn down when t ends.
func newSuite(t *testing.T) *suite {
	t.Helper()
	s := &suite{}
	s.reg = framework.StartRegistry(t)
	// The API server authenticates itself to the webhook with a client
	// certificate, as deploy/ sets it up (issue 12).
	webhookAddr := "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	s.auth = framework.NewWebhookClientAuth(t, webhookAddr)
	s.api = framework.StartAPIServer(t, framework.WithAdmissionConfig(s.auth.AdmissionConfig))

	// No soak time, so that a digest reaches prod in four promotions, and
	// break-glass everywhere but prod; in test only for e2e-oncall, with
	// a break-glass-at at most an hour old. The webhook watches Flux's
	// source objects, for HelmCharts and HelmReleases.
	s.serve = framework.StartStagegate(t,
		framework.WithAdmissionListener(webhookAddr, s.auth.CAFile),
		framework.WithToken("", "e2e-pipeline", "e2e"),
		framework.WithLogLevel("debug"),
		framework.WithConfig(fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [e2e], minSoak: 0s, breakGlass: true}
- {name: test, groups: [e2e], minSoak: 0s, breakGlass: true, breakGlassGroups: [e2e-oncall], breakGlassMaxAge: 1h}
- {name: stage, groups: [e2e], minSoak: 0s, breakGlass: true}
- {name: prod, groups: [e2e], minSoak: 0s, breakGlass: false}
admission:
  sources: {enabled: true, kubeconfig: %q}
`, s.reg.Addr, s.api.KubeconfigPath)))
	s.bin, s.dir, s.configPath, s.token = s.serve.Bin, s.serve.Dir, s.serve.ConfigPath, s.serve.Token
	s.url, s.webhookURL = s.serve.URL, s.serve.WebhookURL
	s.installWebhook(t, s.namespace(t, "webhook-ready", "prod"))
	return s
}

// installWebhook applies what `stagegate manifests --webhook-only` prints,
// with kubectl, and waits until the API server calls the webhook for a pod
// in probeNS, a prod namespace.
func (s *suite) installWebhook(t *testing.T, probeNS string, extra ...string) {
	t.Helper()
	out := s.mustRun(t, append([]string{"manifests", "--config", s.configPath, "--url", s.webhookURL,
		"--ca-file", s.caFile(), "--webhook-only"}, extra...)...)
	p := filepath.Join(s.dir, "webhook.yaml")
	writeFile(t, p, out, 0o600)
	if _, stderr, err := s.api.Kubectl(t, "apply", "-f", p); err != nil {
		t.Fatalf("kubectl apply webhook configuration: %v\n%s", err, stderr)
	}
	s.waitAdmission(t, probeNS)
}

// waitAdmission polls until the API server asks stagegate about a pod in
// ns (a prod namespace): the webhook configuration reaches the API
// server's admission chain asynchronously, and after a CA change the API
// server must trust the new certificate.
func (s *suite) waitAdmission(t *testing.T, ns string) {
	t.Helper()
	probe := pod(ns, "probe", "127.0.0.1:1/never/promoted@sha256:"+strings.Repeat("0", 64))
	s.api.WaitForWebhook(t, func() error { return createDryRun(t, s.api.Clientset, probe) }, "stagegate denied")
}

// run runs the stagegate binary with the suite's token and key password in
// its environment.
func (s *suite) run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return s.serve.Run(t, args...)
}

func (s *suite) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	return s.serve.MustRun(t, args...)
}

// client returns the flags that point a client command at the server.
func (s *suite) client(args ...string) []string {
	return s.serve.ClientFlags(args...)
}

// promote promotes ref to each stage in turn with `stagegate promote`.
func (s *suite) promote(t testing.TB, ref string, stages ...string) {
	t.Helper()
	for _, st := range stages {
		s.mustRun(t, s.client("promote", ref, "--stage", st, "--reason", "e2e", "-o", os.DevNull)...)
	}
}

// toProd are the stages a digest goes through to reach prod.
var toProd = []string{"dev", "test", "stage", "prod"}

// pushImage pushes a new random image as e2e/<repo>:v1 and returns its
// digest-pinned reference.
func (s *suite) pushImage(t testing.TB, repo string) string {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(s.reg.Repo("e2e/" + repo + ":v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithContext(t.Context()), remote.WithTransport(s.reg.Transport())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return s.reg.Repo("e2e/"+repo) + "@" + d.String()
}

// httpClient trusts the current CA file, which the certificate scenario
// replaces.
func (s *suite) httpClient(t testing.TB) *http.Client {
	t.Helper()
	return s.serve.Client(t)
}

// get sends an authenticated GET to the promotion API.
func (s *suite) get(t testing.TB, path string) []byte {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	c := s.httpClient(t)
	defer c.CloseIdleConnections()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", path, resp.Status, b)
	}
	return b
}

// ledgerSize is the tree size of the current checkpoint, whose signature is
// verified with the log's public key.
func (s *suite) ledgerSize(t testing.TB) uint64 {
	t.Helper()
	pub, err := os.ReadFile(filepath.Join(s.dir, "keys", "log.pub"))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(strings.TrimSpace(string(pub)))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ledger.ParseCheckpoint(string(s.get(t, "/v1/ledger/checkpoint")), v)
	if err != nil {
		t.Fatal(err)
	}
	return cp.Size
}

// ledgerEntries returns the entries from index start on.
func (s *suite) ledgerEntries(t testing.TB, start uint64) []ledger.Entry {
	t.Helper()
	var page struct {
		Entries []ledger.Entry `json:"entries"`
	}
	if err := json.Unmarshal(s.get(t, fmt.Sprintf("/v1/ledger/entries?start=%d&limit=1000", start)), &page); err != nil {
		t.Fatal(err)
	}
	return page.Entries
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
