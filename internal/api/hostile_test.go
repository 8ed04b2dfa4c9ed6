package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/policies"
)

// secret is what an internal service (a cloud metadata endpoint) answers a
// request that a hostile registry redirected to it.
const secret = "METADATA-TOKEN-s3cr3t"

// syncBuffer is a log sink that the handlers may write concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// hostileEnv is the promotion API over rc, with every stage attesting, so
// that both the registry client's path (resolution) and internal/oci's
// (attaching) meet the registry; logs go to log.
type hostileEnv struct {
	url    string
	ledger *ledger.Ledger
	log    *syncBuffer
}

func newHostileEnv(t *testing.T, rc *registry.Client) *hostileEnv {
	t.Helper()
	l, _ := ledgertest.New(t)
	signer := signingtest.Signer(t)
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	buf := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	stageOpts := map[string]promotion.StageOptions{}
	for _, s := range cfg.Stages {
		stageOpts[s.Name] = promotion.StageOptions{Attest: true}
	}
	att := oci.NewAttacher(oci.WithRemoteOptions(rc.RemoteOptions), oci.WithReferenceParser(rc.ParseReference), oci.WithLogger(logger))
	svc := promotion.New(l, signer, pol, rc, cfg.StageNames(), promotion.WithLogger(logger), promotion.WithRegistry(att, stageOpts, nil))
	a := api.New(svc, l, api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{
		{SHA256: api.HashToken(pipelineToken), Subject: "ci", Groups: []string{"pipeline"}}}}),
		cfg.StageNames(), api.WithLogger(logger))
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &hostileEnv{url: srv.URL, ledger: l, log: buf}
}

func (e *hostileEnv) promote(t *testing.T, image string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.url+"/v1/promotions", strings.NewReader(promoteBody(image, "dev")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pipelineToken)
	return do(t, req)
}

// listen starts h on a listener that counts its connections; the address
// is named host ("localhost" for a host apart from the 127.0.0.1 ones).
func listen(t *testing.T, host string, h http.Handler) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &acceptCounter{Listener: ln}
	srv := &httptest.Server{Listener: cl, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return fmt.Sprintf("%s:%d", host, ln.Addr().(*net.TCPAddr).Port), &cl.n
}

type acceptCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// A registry that accepts the connection and never answers gives the
// pipeline a 504 naming it, well before the server's write timeout.
func TestRegistryThatNeverAnswersIs504(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-hold; c.Close() }()
		}
	}()
	reg := ln.Addr().String()
	e := newHostileEnv(t, registry.New(registry.WithHost(reg, registry.Host{Insecure: true}), registry.WithTimeout(500*time.Millisecond)))
	start := time.Now()
	status, body := e.promote(t, reg+"/team/app:1.0")
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("the answer took %s", took)
	}
	var got map[string]string
	if err := json.Unmarshal(body, &got); err != nil {
		t.Fatalf("body %s: %v", body, err)
	}
	want := "registry " + reg + " did not answer within 500ms"
	if status != http.StatusGatewayTimeout || got["error"] != want {
		t.Fatalf("got %d %s, want 504 %q", status, body, want)
	}
	if n, _ := e.ledger.Size(); n != 0 {
		t.Fatalf("%d entries recorded", n)
	}
}

// Whatever a hostile registry redirects stagegate to, that answer reaches
// neither the API's answer nor the log: not on resolution (the registry
// client), not on attaching the attestation (internal/oci).
func TestRegistryAnswersAreNotEchoed(t *testing.T) {
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}
	internal, _ := listen(t, "localhost", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("as") == "registry-error" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":%q,"detail":%q}]}`, secret, secret)
			return
		}
		// Not a 5xx: go-containerregistry retries those, with back-off.
		http.Error(w, secret, http.StatusBadRequest)
	}))
	upstream, _ := url.Parse("http://" + emb.Host)
	proxy := httputil.NewSingleHostReverseProxy(upstream)
	tests := map[string]struct {
		// redirect says which requests the registry sends to the internal host.
		redirect   func(*http.Request) bool
		as         string
		wantStatus int
	}{
		"resolution redirected to a 400": {
			redirect:   func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") },
			wantStatus: http.StatusBadGateway,
		},
		"resolution redirected to a registry error": {
			redirect:   func(r *http.Request) bool { return strings.Contains(r.URL.Path, "/manifests/") },
			as:         "registry-error",
			wantStatus: http.StatusNotFound,
		},
		"attestation redirected to a 400": {
			redirect:   func(r *http.Request) bool { return strings.Contains(r.URL.Path, "sha256-") },
			wantStatus: http.StatusBadGateway,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reg, _ := listen(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tc.redirect(r) {
					http.Redirect(w, r, "http://"+internal+"/latest/meta-data/token?as="+tc.as, http.StatusFound)
					return
				}
				proxy.ServeHTTP(w, r)
			}))
			e := newHostileEnv(t, registry.New(registry.WithHost(reg, registry.Host{Insecure: true}), registry.WithTimeout(3*time.Second)))
			status, body := e.promote(t, strings.Replace(sample.Image, emb.Host, reg, 1))
			if status != tc.wantStatus {
				t.Fatalf("status %d, want %d: %s", status, tc.wantStatus, body)
			}
			if strings.Contains(string(body), secret) {
				t.Fatalf("the answer echoes the internal response: %s", body)
			}
			if strings.Contains(e.log.String(), secret) {
				t.Fatalf("the log echoes the internal response:\n%s", e.log)
			}
		})
	}
}

// With the allow-list on, a reference to another host is refused with a
// message naming the host and the setting, and nothing connects to it.
func TestHostOutsideAllowListIsRefused(t *testing.T) {
	reg, accepts := listen(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, secret) }))
	e := newHostileEnv(t, registry.New(registry.WithAllowList("registry.internal:5000"), registry.WithTimeout(time.Second)))
	status, body := e.promote(t, reg+"/team/app:1.0")
	var got map[string]string
	_ = json.Unmarshal(body, &got)
	if status != http.StatusForbidden || !strings.Contains(got["error"], reg) || !strings.Contains(got["error"], "registryAllowList") {
		t.Fatalf("got %d %s, want 403 naming %s and registryAllowList", status, body, reg)
	}
	if n := accepts.Load(); n != 0 {
		t.Fatalf("%d connections to a host outside the allow-list", n)
	}
}
