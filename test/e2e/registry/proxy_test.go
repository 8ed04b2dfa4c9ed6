package registry

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// proxySecret is what an internal service (a cloud metadata endpoint)
// answers; no answer of stagegate and no line of its log may carry it.
const proxySecret = "METADATA-TOKEN-e2e-s3cr3t"

// countedServer serves h on loopback under host ("localhost" names a host
// apart from "127.0.0.1") and counts the connections it accepts.
func countedServer(t *testing.T, host string, h http.Handler) (string, *atomic.Int64) {
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

// tarpit accepts connections and never answers.
func tarpit(t *testing.T) string {
	t.Helper()
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
	return ln.Addr().String()
}

// TestNotAProxy is issue 12's "stagegate is not a proxy" against a real
// distribution registry and a real `stagegate serve` with the allow-list on:
// the registry it lists works, redirects it allows are followed but their
// answers never echoed, hosts and redirects it does not list are never
// contacted, and a registry that never answers is a 504 the CLI prints.
func TestNotAProxy(t *testing.T) {
	tl := newTools(t)
	reg := framework.StartRegistry(t)
	image := pushImage(t, reg, "team/app", nil)

	internal, internalHits := countedServer(t, "localhost", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, proxySecret, http.StatusBadRequest)
	}))
	unlisted, unlistedHits := countedServer(t, "localhost", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, proxySecret)
	}))
	// redirector is listed; it sends manifests to internal (listed too) or,
	// for repository "away", to unlisted.
	redirector, _ := countedServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		to := internal
		if strings.HasPrefix(r.URL.Path, "/v2/away/") {
			to = unlisted
		}
		http.Redirect(w, r, "http://"+to+"/latest/meta-data/token", http.StatusFound)
	}))
	stranger, strangerHits := countedServer(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, proxySecret)
	}))
	pit := tarpit(t)

	n := newNode(t, "not-a-proxy", nodeOptions{
		env: []string{"DOCKER_CONFIG=" + tl.anonymous(t)},
		config: fmt.Sprintf(`registryAllowList: true
registryTimeout: 2s
registries:
- {host: %q, insecure: true}
- {host: %q, insecure: true}
- {host: %q, insecure: true}
- {host: %q, insecure: true}
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
`, reg.Addr, redirector, internal, pit),
	})

	t.Run("listed registry", func(t *testing.T) {
		if status, body := n.promoteAPI(t, image, "dev"); status != http.StatusCreated {
			t.Fatalf("promotion from %s: %d %s", reg.Addr, status, body)
		}
	})
	t.Run("unlisted host", func(t *testing.T) {
		status, body := n.promoteAPI(t, stranger+"/team/app:v1", "dev")
		if status != http.StatusForbidden || !strings.Contains(string(body), stranger) || !strings.Contains(string(body), "registryAllowList") {
			t.Fatalf("got %d %s, want 403 naming %s and registryAllowList", status, body, stranger)
		}
		if n := strangerHits.Load(); n != 0 {
			t.Fatalf("%d connections to an unlisted host", n)
		}
	})
	t.Run("redirect to an unlisted host", func(t *testing.T) {
		status, body := n.promoteAPI(t, redirector+"/away/app:v1", "dev")
		if status != http.StatusForbidden || !strings.Contains(string(body), "redirected to "+unlisted) {
			t.Fatalf("got %d %s, want 403 naming the redirect", status, body)
		}
		if n := unlistedHits.Load(); n != 0 {
			t.Fatalf("%d connections to the redirect's unlisted host", n)
		}
	})
	t.Run("listed redirect is followed, its answer is not echoed", func(t *testing.T) {
		status, body := n.promoteAPI(t, redirector+"/team/app:v1", "dev")
		if status != http.StatusBadGateway || strings.Contains(string(body), proxySecret) {
			t.Fatalf("got %d %s, want a 502 without the internal answer", status, body)
		}
		if internalHits.Load() == 0 {
			t.Fatal("the listed redirect was not followed")
		}
	})
	t.Run("registry that never answers", func(t *testing.T) {
		start := time.Now()
		_, stderr, err := n.run(t, n.client("promote", pit+"/team/app:v1", "--stage", "dev", "--progress", "none")...)
		want := "registry " + pit + " did not answer within 2s (HTTP 504)"
		var exit interface{ ExitCode() int }
		if !errors.As(err, &exit) || !strings.Contains(stderr, want) || time.Since(start) > 20*time.Second {
			t.Fatalf("promote: %v after %s; stderr %q, want %q", err, time.Since(start), stderr, want)
		}
	})
	if log := n.serve.Logs(); strings.Contains(log, proxySecret) {
		t.Fatalf("the serve log carries the internal answer:\n%s", log)
	}
}
