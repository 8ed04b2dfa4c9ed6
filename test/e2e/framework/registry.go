package framework

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"golang.org/x/crypto/bcrypt"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// registryTool is the hack/tools.sh name that builds bin/registry.
const registryTool = "registry"

// Registry is a CNCF distribution registry process on a loopback port with
// filesystem storage in a test temporary directory.
type Registry struct {
	// Addr is host:port, 127.0.0.1:<port>, as used in image references.
	Addr string

	t          testing.TB
	bin        string
	configPath string
	cfg        registryOptions
	proc       *process.Process // nil while stopped
	// out outlives each process: a failure shows every run's output.
	out *process.Output
}

type registryOptions struct {
	user, pass      string
	certPEM, keyPEM []byte
}

// RegistryOption configures StartRegistry.
type RegistryOption func(*registryOptions)

// WithHtpasswd requires HTTP basic authentication as user/pass.
func WithHtpasswd(user, pass string) RegistryOption {
	return func(o *registryOptions) { o.user, o.pass = user, pass }
}

// WithTLS serves HTTPS with the given PEM certificate (chain) and key. The
// certificate should be valid for 127.0.0.1.
func WithTLS(certPEM, keyPEM []byte) RegistryOption {
	return func(o *registryOptions) { o.certPEM, o.keyPEM = certPEM, keyPEM }
}

// StartRegistry writes a registry config and starts bin/registry; the
// registry is stopped when the test ends.
func StartRegistry(t testing.TB, opts ...RegistryOption) *Registry {
	t.Helper()
	r := &Registry{
		t:   t,
		bin: Tool(t, registryTool, "registry"),
		out: process.NewOutput(maxOutput),
	}
	for _, o := range opts {
		o(&r.cfg)
	}
	dir := t.TempDir()
	r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	r.configPath = filepath.Join(dir, "config.yml")
	if err := r.writeConfig(dir); err != nil {
		t.Fatalf("framework: registry config: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("registry %s output (tail):\n%s", r.Addr, r.out.Tail(16<<10))
		}
		r.stop()
	})
	r.Start()
	return r
}

func (r *Registry) writeConfig(dir string) error {
	storage := filepath.Join(dir, "storage")
	if err := os.MkdirAll(storage, 0o700); err != nil {
		return err
	}
	httpCfg := map[string]any{
		"addr": r.Addr,
		// Fixed so that upload state signed before a restart stays valid.
		"secret": "stagegate-e2e-" + strconv.Itoa(os.Getpid()),
	}
	cfg := map[string]any{
		"version": "0.1",
		"log": map[string]any{
			"level":     "warn",
			"accesslog": map[string]any{"disabled": true},
		},
		"storage": map[string]any{
			"filesystem": map[string]any{"rootdirectory": storage},
			"delete":     map[string]any{"enabled": true},
			"maintenance": map[string]any{
				"uploadpurging": map[string]any{"enabled": false},
			},
		},
		"http": httpCfg,
	}
	if r.cfg.certPEM != nil {
		certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certFile, r.cfg.certPEM, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(keyFile, r.cfg.keyPEM, 0o600); err != nil {
			return err
		}
		httpCfg["tls"] = map[string]any{"certificate": certFile, "key": keyFile}
	}
	if r.cfg.user != "" {
		// bcrypt is the only hash distribution's htpasswd accepts.
		hash, err := bcrypt.GenerateFromPassword([]byte(r.cfg.pass), bcrypt.MinCost)
		if err != nil {
			return err
		}
		htpasswd := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(htpasswd, []byte(r.cfg.user+":"+string(hash)+"\n"), 0o600); err != nil {
			return err
		}
		cfg["auth"] = map[string]any{
			"htpasswd": map[string]any{"realm": "stagegate-e2e", "path": htpasswd},
		}
	}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		return err
	}
	return os.WriteFile(r.configPath, b, 0o600)
}

// Start (re)starts the registry on the same address and storage and waits
// until /v2/ answers. Calling it while the registry runs fails the test.
func (r *Registry) Start() {
	r.t.Helper()
	if r.proc != nil {
		r.t.Fatalf("framework: registry %s already running", r.Addr)
	}
	// The registry exports traces over OTLP by default and would log an
	// export error for every request.
	p, err := process.Start(context.Background(), "registry "+r.Addr, r.bin, []string{"serve", r.configPath},
		process.WithLog(r.out), process.WithOutputLimit(64<<10),
		process.WithEnv("OTEL_TRACES_EXPORTER=none", "OTEL_SDK_DISABLED=true"))
	if err != nil {
		r.t.Fatalf("framework: %v", err)
	}
	r.proc = p
	// Any HTTP status (401 included: a registry requiring auth) is up.
	// Only liveness is probed here; trust is the caller's (see Transport).
	client := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // liveness only
	}
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := p.Poll(ctx, process.HTTPStatus(client, r.URL()+"/v2/", 0)); err != nil {
		r.stop()
		r.t.Fatalf("framework: %v\n%s", err, r.out.Tail(8<<10))
	}
}

// Stop stops the registry, keeping its address and storage for Start; use
// it to simulate an outage. Stopping a stopped registry does nothing.
func (r *Registry) Stop() {
	r.t.Helper()
	r.stop()
}

func (r *Registry) stop() {
	if r.proc == nil {
		return
	}
	_ = r.proc.Stop(10 * time.Second)
	r.proc = nil
}

// URL is the registry's base URL, http:// or https:// per WithTLS.
func (r *Registry) URL() string {
	if r.cfg.certPEM != nil {
		return "https://" + r.Addr
	}
	return "http://" + r.Addr
}

// Repo returns an image reference prefix in this registry, Addr + "/" + name.
func (r *Registry) Repo(name string) string {
	return r.Addr + "/" + strings.TrimPrefix(name, "/")
}

// Authenticator returns the credentials set by WithHtpasswd, or anonymous.
func (r *Registry) Authenticator() authn.Authenticator {
	if r.cfg.user == "" {
		return authn.Anonymous
	}
	return &authn.Basic{Username: r.cfg.user, Password: r.cfg.pass}
}

// Transport returns an HTTP transport that trusts the WithTLS certificate
// (as a root), or the default transport when the registry serves HTTP.
func (r *Registry) Transport() http.RoundTripper {
	if r.cfg.certPEM == nil {
		return http.DefaultTransport
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(r.cfg.certPEM) {
		r.t.Fatalf("framework: registry: no certificate in the WithTLS PEM")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr
}
