package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// secret is what an internal service (a cloud metadata endpoint) answers;
// it must never reach an error, whatever path the error takes.
const secret = "METADATA-TOKEN-s3cr3t"

// countingListener records every connection it accepts, so that a test can
// say no connection was even made.
type countingListener struct {
	net.Listener
	accepts atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.accepts.Add(1)
	}
	return c, err
}

// serve starts h on a counting listener at host ("127.0.0.1" or
// "localhost": go-containerregistry refuses redirects to an IP literal of a
// private network, and a name is what an attacker would use) and returns
// host:port.
func serve(t *testing.T, host string, h http.Handler) (string, *countingListener) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: ln}
	srv := &httptest.Server{Listener: cl, Config: &http.Server{Handler: h}}
	srv.Start()
	t.Cleanup(srv.Close)
	return fmt.Sprintf("%s:%d", host, ln.Addr().(*net.TCPAddr).Port), cl
}

// hostile is a registry whose manifests redirect to target.
func hostile(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return
		}
		http.Redirect(w, r, "http://"+target+"/latest/meta-data/token", http.StatusFound)
	})
}

// viaRemote is the path of internal/oci: go-containerregistry called with
// the client's RemoteOptions; its error is wrapped as is.
func viaRemote(c *Client, ref string) error {
	r, err := c.ParseReference(ref)
	if err != nil {
		return err
	}
	_, err = remote.Get(r, c.RemoteOptions(context.Background(), r)...)
	return err
}

func TestHostOutsideAllowListIsNeverContacted(t *testing.T) {
	e, s := startSeeded(t)
	reg, ln := serve(t, "127.0.0.1", http.NotFoundHandler())
	c := New(WithHost(reg, Host{Insecure: true}), WithAllowList(e.Host), WithTimeout(2*time.Second))
	ref := reg + "/sample/app:1.0"
	for name, call := range map[string]func() error{
		"resolve":       func() error { _, err := c.Resolve(context.Background(), ref); return err },
		"digest":        func() error { _, err := c.Digest(context.Background(), ref); return err },
		"remoteOptions": func() error { return viaRemote(c, ref) },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			var hna *HostNotAllowedError
			if !errors.As(err, &hna) || !errors.Is(err, ErrHostNotAllowed) {
				t.Fatalf("error = %v, want a *HostNotAllowedError", err)
			}
			if msg := err.Error(); !strings.Contains(msg, reg) || !strings.Contains(msg, "registryAllowList") {
				t.Fatalf("error %q does not name the host and the setting", msg)
			}
		})
	}
	if n := ln.accepts.Load(); n != 0 {
		t.Fatalf("%d connections were made to a host outside the allow-list", n)
	}
	// The allowed host still works.
	if _, err := c.Resolve(context.Background(), s.Image); err != nil {
		t.Fatal(err)
	}
}

func TestRedirectsAndErrorBodies(t *testing.T) {
	tests := map[string]struct {
		// internal answers the redirected request.
		internal http.HandlerFunc
		// allowList, if set, is on with the hostile registry only.
		allowList bool
		want      error
		// contacted says whether the internal host may see a connection.
		contacted bool
	}{
		"redirect outside the allow-list": {
			internal:  func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, secret) },
			allowList: true, want: ErrHostNotAllowed,
		},
		// A body that is no manifest: resolved or refused, it is never
		// repeated.
		"200 with a secret": {
			internal:  func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, secret) },
			contacted: true,
		},
		"500 with a secret": {
			internal: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, secret, http.StatusInternalServerError) },
			want:     ErrUnreachable, contacted: true,
		},
		"403 with a secret": {
			internal: func(w http.ResponseWriter, _ *http.Request) { http.Error(w, secret, http.StatusForbidden) },
			want:     ErrUnauthorized, contacted: true,
		},
		"registry error whose message is a secret": {
			internal: func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusNotFound)
				fmt.Fprintf(w, `{"errors":[{"code":"MANIFEST_UNKNOWN","message":%q,"detail":{"token":%q}},{"code":%q}]}`, secret, secret, secret)
			},
			want: ErrNotFound, contacted: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			internal, iln := serve(t, "localhost", tc.internal)
			reg, _ := serve(t, "127.0.0.1", hostile(internal))
			opts := []Option{WithHost(reg, Host{Insecure: true}), WithTimeout(2 * time.Second)}
			if tc.allowList {
				opts = append(opts, WithAllowList(reg))
			}
			c := New(opts...)
			ref := reg + "/team/app:1.0"
			img, resolveErr := c.Resolve(context.Background(), ref)
			if tc.want != nil && !errors.Is(resolveErr, tc.want) || strings.Contains(fmt.Sprint(img), secret) {
				t.Fatalf("Resolve = %+v, %v, want %v", img, resolveErr, tc.want)
			}
			for path, err := range map[string]error{"Resolve": resolveErr, "RemoteOptions": viaRemote(c, ref)} {
				if err != nil && strings.Contains(err.Error(), secret) {
					t.Fatalf("%s error carries the internal answer: %v", path, err)
				}
			}
			if tc.want == ErrNotFound && !strings.Contains(resolveErr.Error(), "MANIFEST_UNKNOWN") {
				t.Fatalf("Resolve error %q lost the registry's error code", resolveErr)
			}
			if !tc.contacted && iln.accepts.Load() != 0 {
				t.Fatalf("the internal host was contacted %d times", iln.accepts.Load())
			}
		})
	}
}

// A token realm is a host like any other: outside the allow-list, it is
// never asked.
func TestTokenRealmOutsideAllowList(t *testing.T) {
	realm, rln := serve(t, "localhost", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, secret) }))
	reg, _ := serve(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="http://%s/token",service="reg"`, realm))
		w.WriteHeader(http.StatusUnauthorized)
	}))
	c := New(WithHost(reg, Host{Insecure: true}), WithAllowList(reg), WithTimeout(2*time.Second))
	_, err := c.Resolve(context.Background(), reg+"/team/app:1.0")
	var hna *HostNotAllowedError
	if !errors.As(err, &hna) || hna.Host != realm {
		t.Fatalf("error = %v, want the realm %s refused", err, realm)
	}
	if strings.Contains(err.Error(), secret) || rln.accepts.Load() != 0 {
		t.Fatalf("the realm was contacted (%d) or echoed: %v", rln.accepts.Load(), err)
	}
}

// A redirect to a host that is allowed too is followed, as registries do
// for blob storage.
func TestAllowedRedirectIsFollowed(t *testing.T) {
	e, s := startSeeded(t)
	storage := strings.Replace(e.Host, "127.0.0.1", "localhost", 1)
	front, _ := serve(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+storage+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	ref := strings.Replace(s.Image, e.Host, front, 1)
	c := New(WithHost(front, Host{Insecure: true}), WithAllowList(front, storage), WithTimeout(2*time.Second))
	img, err := c.Resolve(context.Background(), ref)
	if err != nil || !ValidDigest(img.Digest) {
		t.Fatalf("Resolve through an allowed redirect: %v %+v", err, img)
	}
	c = New(WithHost(front, Host{Insecure: true}), WithAllowList(front), WithTimeout(2*time.Second))
	if _, err := c.Resolve(context.Background(), ref); !errors.Is(err, ErrHostNotAllowed) || !strings.Contains(err.Error(), "redirected to "+storage) {
		t.Fatalf("redirect to a host not allowed: %v", err)
	}
}

// tarpit accepts connections and never answers; with headers, it sends
// the headers of an answer and then nothing.
func tarpit(t *testing.T, headers bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				if headers {
					buf := make([]byte, 4096)
					for {
						n, err := conn.Read(buf)
						if err != nil {
							return
						}
						if strings.Contains(string(buf[:n]), "/v2/ ") {
							fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
							continue
						}
						fmt.Fprint(conn, "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000\r\n\r\n")
						break
					}
				}
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

func TestRegistryThatNeverAnswers(t *testing.T) {
	for name, headers := range map[string]bool{"no answer": false, "headers, then nothing": true} {
		t.Run(name, func(t *testing.T) {
			reg := tarpit(t, headers)
			c := New(WithHost(reg, Host{Insecure: true}), WithTimeout(300*time.Millisecond))
			ref := reg + "/team/app:1.0"
			start := time.Now()
			_, err := c.Resolve(context.Background(), ref)
			if !errors.Is(err, ErrTimeout) || !errors.Is(err, ErrUnreachable) {
				t.Fatalf("Resolve error = %v, want ErrTimeout", err)
			}
			if want := "registry " + reg + " did not answer within 300ms"; err.Error() != want {
				t.Fatalf("Resolve error %q, want %q", err, want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("Resolve took %s", d)
			}
			// The oci path has no deadline of its own: the guard's bound
			// holds it, and names the registry.
			start = time.Now()
			err = viaRemote(c, ref)
			var te *TimeoutError
			if !errors.As(err, &te) || te.Host != reg || time.Since(start) > 2*time.Second {
				t.Fatalf("remote.Get error = %v after %s, want a *TimeoutError", err, time.Since(start))
			}
		})
	}
}

func TestNormalHost(t *testing.T) {
	tests := map[string]struct{ in, want string }{
		"https port": {"Registry.Example:443", "registry.example"},
		"http port":  {"registry.example:80", "registry.example"},
		"other port": {"registry.example:5000", "registry.example:5000"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := normalHost(tc.in); got != tc.want {
				t.Fatalf("normalHost(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	_ = name.DefaultRegistry
}

// dribbler writes each answer in small pieces with pauses between them.
type dribbler struct {
	http.ResponseWriter
	pause time.Duration
}

func (d dribbler) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), 64)
		m, err := d.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		d.ResponseWriter.(http.Flusher).Flush()
		time.Sleep(d.pause)
		p = p[k:]
	}
	return n, nil
}

// A registry that answers slowly but steadily is waited for: the bound is
// on each wait, not on the whole of a long read (a copy).
func TestSlowButSteadyAnswerIsNotCut(t *testing.T) {
	e, s := startSeeded(t)
	h := e.srv.Handler
	slow, _ := serve(t, "127.0.0.1", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(dribbler{ResponseWriter: w, pause: 80 * time.Millisecond}, r)
	}))
	c := New(WithHost(slow, Host{Insecure: true}), WithTimeout(300*time.Millisecond))
	start := time.Now()
	if err := viaRemote(c, strings.Replace(s.Image, e.Host, slow, 1)); err != nil {
		t.Fatalf("slow answer cut after %s: %v", time.Since(start), err)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("the answer took %s, not longer than the timeout: the test proves nothing", d)
	}
}
