package registry

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// keyPassword encrypts every stagegate cosign key of the suite; it reaches
// stagegate through the environment only, as in production.
const keyPassword = "e2e-key-password"

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
	serve *serveProcess
}

// nodeOptions is what differs between the suite's stagegates.
type nodeOptions struct {
	// config is appended to the generated config file: stages,
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
	n := &node{name: name, dir: t.TempDir(), env: o.env, api: o.api}
	n.bin = framework.BuildBinary(t, "./cmd/stagegate")
	n.url = "https://127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	n.mustRun(t, "keys", "generate", "--dir", filepath.Join(n.dir, "keys"))
	n.mustRun(t, "certs", "generate", "--dir", n.certDir())
	n.token = n.writeTokens(t)
	n.configPath = n.writeConfig(t, o.config)
	n.serve = n.startServe(t)
	t.Cleanup(func() { n.serve.stop() })
	if n.api != nil {
		n.installWebhook(t, n.namespace(t, "webhook-ready", "prod"))
	}
	return n
}

func (n *node) certDir() string { return filepath.Join(n.dir, "certs") }
func (n *node) caFile() string  { return filepath.Join(n.certDir(), "ca.crt") }

// cosignPub is the public key others trust this stagegate's attestations by.
func (n *node) cosignPub() string { return filepath.Join(n.dir, "keys", "cosign.pub") }

func (n *node) writeTokens(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := "sge2e_" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	file := fmt.Sprintf("tokens:\n- sha256: %s\n  subject: e2e-pipeline-%s\n  groups: [e2e]\n", hex.EncodeToString(sum[:]), n.name)
	writeFile(t, filepath.Join(n.dir, "tokens.yaml"), file, 0o600)
	return tok
}

func (n *node) writeConfig(t *testing.T, extra string) string {
	t.Helper()
	cfg := fmt.Sprintf(`listen: %s
dataDir: %s
tls:
  certFile: %s
  keyFile: %s
keys:
  dir: %s
tokensFile: %s
logOrigin: stagegate.dev/e2e/%s
`, strings.TrimPrefix(n.url, "https://"), filepath.Join(n.dir, "data"),
		filepath.Join(n.certDir(), "tls.crt"), filepath.Join(n.certDir(), "tls.key"),
		filepath.Join(n.dir, "keys"), filepath.Join(n.dir, "tokens.yaml"), n.name) + extra
	p := filepath.Join(n.dir, "config.yaml")
	writeFile(t, p, cfg, 0o600)
	return p
}

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
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := n.create(t, probe, true)
		if err != nil && (strings.Contains(err.Error(), "stagegate denied") || strings.Contains(err.Error(), "stagegate could not decide")) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the API server does not ask stagegate yet; last answer: %v", n.name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs the stagegate binary with the node's token and key password.
func (n *node) run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, n.bin, args...)
	cmd.Dir = n.dir
	cmd.Env = append(os.Environ(), "STAGEGATE_TOKEN="+n.token, "STAGEGATE_KEY_PASSWORD="+keyPassword)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (n *node) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := n.run(t, args...)
	if err != nil {
		t.Fatalf("%s: stagegate %s: %v\n%s", n.name, strings.Join(args, " "), err, stderr)
	}
	return out
}

// client returns the flags that point a client command at this node.
func (n *node) client(args ...string) []string {
	return append(args, "--server", n.url, "--ca-file", n.caFile())
}

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
	b, err := os.ReadFile(n.caFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", n.caFile())
	}
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
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

// serveProcess is a running `stagegate serve`.
type serveProcess struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	once   sync.Once
}

// startServe starts `stagegate serve` and waits until /readyz answers 200.
func (n *node) startServe(t *testing.T) *serveProcess {
	t.Helper()
	p := &serveProcess{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(n.bin, "serve", "--config", n.configPath, "--log-level", "debug")
	p.cmd.Dir = n.dir
	p.cmd.Env = append(append(os.Environ(), "STAGEGATE_KEY_PASSWORD="+keyPassword), n.env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: start stagegate serve: %v", n.name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stagegate serve %s output (tail):\n%s", n.name, p.out.tail(24<<10))
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := n.ready(t)
		if err == nil {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("%s: stagegate serve exited: %v\n%s", n.name, p.cmd.ProcessState, p.out.tail(8<<10))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			t.Fatalf("%s: stagegate serve not ready: %v\n%s", n.name, err, p.out.tail(8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (n *node) ready(t testing.TB) error {
	c := n.httpClient(t)
	defer c.CloseIdleConnections()
	resp, err := c.Get(n.url + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// stop ends serve with SIGTERM (SIGKILL after 10 s) and waits for it.
func (p *serveProcess) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

// syncBuffer collects a child's output, written from os/exec's goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.buf.Bytes()
	if len(p) > n {
		p = p[len(p)-n:]
	}
	return string(p)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}
