package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if err := framework.RemoveBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// Tokens of the identities every server started by start knows, unless
// withDevToken lets --dev make its own.
const (
	releaseToken  = "hostile-release-token-3b1f0c"
	outsiderToken = "hostile-outsider-token-9d2e7a"
)

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type serveOptions struct {
	config   string // YAML; written to <data-dir>/config.yaml and passed with -c
	env      []string
	devToken bool
	logLevel string
	dataDir  string
}

type serveOption func(*serveOptions)

func withConfig(yaml string) serveOption { return func(o *serveOptions) { o.config = yaml } }
func withEnv(kv ...string) serveOption   { return func(o *serveOptions) { o.env = append(o.env, kv...) } }
func withDevToken() serveOption          { return func(o *serveOptions) { o.devToken = true } }
func withLogLevel(l string) serveOption  { return func(o *serveOptions) { o.logLevel = l } }
func withDataDir(dir string) serveOption { return func(o *serveOptions) { o.dataDir = dir } }

// server is a `stagegate serve --dev` process.
type server struct {
	t        testing.TB
	bin      string
	dataDir  string
	certDir  string
	addr     string
	url      string
	registry string // embedded registry host
	token    string // identity "dev" (groups pipeline, release)
	client   *http.Client
	pool     *x509.CertPool
	out      *syncBuffer // stdout and stderr
	cmd      *exec.Cmd
	done     chan error
}

// serveArgs are the flags of a dev server on free ports.
func serveArgs(o serveOptions, dataDir, addr, reg string) []string {
	args := []string{"serve", "--dev", "--data-dir", dataDir, "--cert-dir", filepath.Join(dataDir, "certs"),
		"--listen", addr, "--dev-registry", reg, "--log-level", o.logLevel}
	if o.config != "" {
		args = append(args, "-c", filepath.Join(dataDir, "config.yaml"))
	}
	return args
}

func prepare(t testing.TB, opts ...serveOption) (serveOptions, string) {
	t.Helper()
	o := serveOptions{logLevel: "info"}
	for _, opt := range opts {
		opt(&o)
	}
	dataDir := o.dataDir
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	if o.config != "" {
		if err := os.WriteFile(filepath.Join(dataDir, "config.yaml"), []byte(o.config), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if !o.devToken {
		writeTokens(t, filepath.Join(dataDir, "tokens.yaml"))
	}
	return o, dataDir
}

// writeTokens writes a token file (hashes only) with two identities.
func writeTokens(t testing.TB, path string) {
	t.Helper()
	tf := api.TokenFile{Tokens: []api.Token{
		{SHA256: api.HashToken(releaseToken), Subject: "dev", Groups: []string{"pipeline", "release"}},
		{SHA256: api.HashToken(outsiderToken), Subject: "outsider", Groups: []string{"visitors"}},
	}}
	b, err := yaml.Marshal(tf)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// start runs `stagegate serve --dev` and waits until it answers /healthz.
func start(t testing.TB, opts ...serveOption) *server {
	t.Helper()
	o, dataDir := prepare(t, opts...)
	s := &server{
		t: t, bin: framework.BuildBinary(t, "./cmd/stagegate"), dataDir: dataDir,
		certDir:  filepath.Join(dataDir, "certs"),
		addr:     fmt.Sprintf("127.0.0.1:%d", framework.FreePort(t)),
		registry: fmt.Sprintf("127.0.0.1:%d", framework.FreePort(t)),
		out:      &syncBuffer{}, done: make(chan error, 1),
	}
	s.url = "https://" + s.addr
	s.cmd = exec.Command(s.bin, serveArgs(o, dataDir, s.addr, s.registry)...)
	s.cmd.Env = append(os.Environ(), o.env...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(s.stop)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-s.done:
			s.done <- err
			t.Fatalf("serve exited before it was ready (%v):\n%s", err, s.out.String())
		default:
		}
		if s.client == nil {
			if ca, err := os.ReadFile(filepath.Join(s.certDir, "ca.crt")); err == nil {
				s.pool = x509.NewCertPool()
				if s.pool.AppendCertsFromPEM(ca) {
					s.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
						TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"},
					}}
				}
			}
		}
		if s.client != nil {
			if resp, err := s.client.Get(s.url + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready after 90s:\n%s", s.out.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.token = releaseToken
	if o.devToken {
		b, err := os.ReadFile(filepath.Join(dataDir, "dev-token"))
		if err != nil {
			t.Fatal(err)
		}
		s.token = strings.TrimSpace(string(b))
	}
	return s
}

// stop ends the process with SIGTERM and waits for it.
func (s *server) stop() {
	if s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-s.done:
		s.done <- err
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		s.done <- <-s.done
	}
}

// do sends one request; body may be nil, a string, []byte or anything JSON.
func (s *server) do(method, path, token, contentType string, body any) (int, []byte) {
	s.t.Helper()
	return s.doAuth(method, path, token, false, contentType, body)
}

// doAuth is do, optionally with HTTP basic credentials instead of a token.
func (s *server) doAuth(method, path, token string, basic bool, contentType string, body any) (int, []byte) {
	s.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			s.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.url+path, r)
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if basic {
		req.SetBasicAuth("dev", releaseToken)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// size is the ledger size from the signed checkpoint (0 when empty).
func (s *server) size() uint64 {
	s.t.Helper()
	code, body := s.do(http.MethodGet, "/v1/ledger/checkpoint", s.token, "", nil)
	if code == http.StatusNotFound {
		return 0
	}
	lines := strings.Split(string(body), "\n")
	if code != http.StatusOK || len(lines) < 2 {
		s.t.Fatalf("checkpoint: HTTP %d %s", code, body)
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		s.t.Fatalf("checkpoint size %q: %v", lines[1], err)
	}
	return n
}

// promote promotes the embedded registry's sample image to stage and
// returns the receipt's raw JSON and the digest.
func (s *server) promote(stage string) ([]byte, string) {
	s.t.Helper()
	code, body := s.do(http.MethodPost, "/v1/promotions", s.token, "application/json",
		map[string]any{"image": s.registry + "/sample/app:1.0", "stage": stage, "reason": "hostile test"})
	if code != http.StatusCreated && code != http.StatusOK {
		s.t.Fatalf("promote to %s: HTTP %d %s", stage, code, body)
	}
	var rc struct {
		Entry struct {
			Digest string `json:"digest"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(body, &rc); err != nil {
		s.t.Fatal(err)
	}
	return body, rc.Entry.Digest
}

// stagegate runs a stagegate command to completion and returns its output.
func (s *server) stagegate(env []string, args ...string) (string, error) {
	s.t.Helper()
	cmd := exec.Command(s.bin, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
