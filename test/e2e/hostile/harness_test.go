package hostile

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestMain(m *testing.M) { framework.Main(m) }

// Tokens of the identities every server started by start knows, unless
// framework.WithDevToken lets --dev make its own.
const (
	releaseToken  = "hostile-release-token-3b1f0c"
	outsiderToken = "hostile-outsider-token-9d2e7a"
)

// server is a `stagegate serve --dev` process on free ports.
type server struct {
	t        testing.TB
	sg       *framework.Stagegate
	bin      string
	dataDir  string
	addr     string
	url      string
	registry string // embedded registry host
	token    string // identity "dev" (groups pipeline, release)
	client   *http.Client
	pool     *x509.CertPool
}

// start runs `stagegate serve --dev` and waits until it is ready. Unless
// opts say framework.WithDevToken, serve knows releaseToken and
// outsiderToken instead of a token of its own.
func start(t testing.TB, opts ...framework.StagegateOption) *server {
	t.Helper()
	sg := framework.StartStagegate(t, append([]framework.StagegateOption{
		framework.WithDev(),
		framework.WithLogLevel("info"),
		framework.WithToken(releaseToken, "dev", "pipeline", "release"),
		framework.WithToken(outsiderToken, "outsider", "visitors"),
	}, opts...)...)
	s := &server{
		t: t, sg: sg, bin: sg.Bin, dataDir: sg.DataDir, addr: sg.Addr, url: sg.URL,
		registry: sg.DevRegistry, token: sg.Token, pool: sg.CAPool(t),
	}
	s.client = &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1"},
	}}
	return s
}

// stop ends the process with SIGTERM and waits for it.
func (s *server) stop() { _ = s.sg.Stop() }

// out is everything the last serve process wrote.
func (s *server) out() string { return s.sg.Logs() }

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
