package admission

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

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// keyPassword encrypts the cosign key of the suite; it reaches stagegate
// through the environment only, as in production.
const keyPassword = "e2e-key-password"

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
	serve      *serveProcess
}

func (s *suite) certDir() string { return filepath.Join(s.dir, "certs") }
func (s *suite) caFile() string  { return filepath.Join(s.certDir(), "ca.crt") }

// newSuite starts everything and installs the webhook configuration; all is
// torn down when t ends.
func newSuite(t *testing.T) *suite {
	t.Helper()
	s := &suite{dir: t.TempDir()}
	s.bin = framework.BuildBinary(t, "./cmd/stagegate")
	s.reg = framework.StartRegistry(t)
	s.url = "https://127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	// The API server authenticates itself to the webhook with a client
	// certificate, as deploy/ sets it up (issue 12).
	s.webhookURL = "https://127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	s.auth = framework.NewWebhookClientAuth(t, strings.TrimPrefix(s.webhookURL, "https://"))
	s.api = framework.StartAPIServer(t, framework.WithAdmissionConfig(s.auth.AdmissionConfig))

	s.mustRun(t, "keys", "generate", "--dir", filepath.Join(s.dir, "keys"))
	s.mustRun(t, "certs", "generate", "--dir", s.certDir())
	s.token = s.writeTokens(t)
	s.configPath = s.writeConfig(t)

	s.serve = s.startServe(t)
	t.Cleanup(func() { s.serve.stop() })
	s.installWebhook(t, s.namespace(t, "webhook-ready", "prod"))
	return s
}

// writeTokens writes the token file (hashes only) and returns the token.
func (s *suite) writeTokens(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	tok := "sge2e_" + hex.EncodeToString(b)
	sum := sha256.Sum256([]byte(tok))
	file := fmt.Sprintf("tokens:\n- sha256: %s\n  subject: e2e-pipeline\n  groups: [e2e]\n", hex.EncodeToString(sum[:]))
	writeFile(t, filepath.Join(s.dir, "tokens.yaml"), file, 0o600)
	return tok
}

// writeConfig writes the server config: no soak time, so that a digest
// reaches prod in four promotions, and break-glass everywhere but prod.
func (s *suite) writeConfig(t *testing.T) string {
	t.Helper()
	cfg := fmt.Sprintf(`listen: %s
dataDir: %s
tls:
  certFile: %s
  keyFile: %s
keys:
  dir: %s
tokensFile: %s
admission:
  listen: %s
  clientCAFile: %s
registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [e2e], minSoak: 0s, breakGlass: true}
- {name: test, groups: [e2e], minSoak: 0s, breakGlass: true}
- {name: stage, groups: [e2e], minSoak: 0s, breakGlass: true}
- {name: prod, groups: [e2e], minSoak: 0s, breakGlass: false}
`, strings.TrimPrefix(s.url, "https://"), filepath.Join(s.dir, "data"),
		filepath.Join(s.certDir(), "tls.crt"), filepath.Join(s.certDir(), "tls.key"),
		filepath.Join(s.dir, "keys"), filepath.Join(s.dir, "tokens.yaml"),
		strings.TrimPrefix(s.webhookURL, "https://"), s.auth.CAFile, s.reg.Addr)
	p := filepath.Join(s.dir, "config.yaml")
	writeFile(t, p, cfg, 0o600)
	return p
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		err := createDryRun(t, s.api.Clientset, probe)
		if err != nil && strings.Contains(err.Error(), "stagegate denied") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API server does not ask stagegate yet; last answer: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// run runs the stagegate binary with the suite's token and key password in
// its environment.
func (s *suite) run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = append(os.Environ(), "STAGEGATE_TOKEN="+s.token, "STAGEGATE_KEY_PASSWORD="+keyPassword)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func (s *suite) mustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := s.run(t, args...)
	if err != nil {
		t.Fatalf("stagegate %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return out
}

// client returns the flags that point a client command at the server.
func (s *suite) client(args ...string) []string {
	return append(args, "--server", s.url, "--ca-file", s.caFile())
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
	b, err := os.ReadFile(s.caFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", s.caFile())
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}
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

// serveProcess is a running `stagegate serve`.
type serveProcess struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	once   sync.Once
}

// startServe starts `stagegate serve` and waits until /readyz answers 200.
func (s *suite) startServe(t *testing.T) *serveProcess {
	t.Helper()
	p := &serveProcess{out: &syncBuffer{}, exited: make(chan struct{})}
	p.cmd = exec.Command(s.bin, "serve", "--config", s.configPath, "--log-level", "debug")
	p.cmd.Dir = s.dir
	p.cmd.Env = append(os.Environ(), "STAGEGATE_KEY_PASSWORD="+keyPassword)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start stagegate serve: %v", err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("stagegate serve output (tail):\n%s", p.out.tail(16<<10))
		}
	})

	deadline := time.Now().Add(60 * time.Second)
	for {
		err := s.ready(t)
		if err == nil {
			return p
		}
		select {
		case <-p.exited:
			t.Fatalf("stagegate serve exited: %v\n%s", p.cmd.ProcessState, p.out.tail(8<<10))
		default:
		}
		if time.Now().After(deadline) {
			p.stop()
			t.Fatalf("stagegate serve not ready: %v\n%s", err, p.out.tail(8<<10))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *suite) ready(t testing.TB) error {
	c := s.httpClient(t)
	defer c.CloseIdleConnections()
	resp, err := c.Get(s.url + "/readyz")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// stop ends serve with SIGTERM (SIGKILL after 10 s) and waits for it. It is
// idempotent.
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
