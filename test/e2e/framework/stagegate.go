package framework

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
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

	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// DefaultKeyPassword encrypts the cosign key `stagegate keys generate`
// writes for a StartStagegate installation; it reaches serve and Run
// through STAGEGATE_KEY_PASSWORD only, as in production.
const DefaultKeyPassword = "e2e-key-password"

// Stop grace periods: a test's explicit Stop waits as long as a loaded
// ledger may take to close; the cleanup of a test that is over need not.
const (
	stopGrace    = 60 * time.Second
	cleanupGrace = 10 * time.Second
)

// Stagegate is an installation of stagegate on disk (config, keys,
// certificates, tokens, data directory) and the `stagegate serve` process
// running on it. Start, Stop, Kill and Spawn act on that one installation,
// so a restart reopens the same ledger on the same address.
type Stagegate struct {
	// Name labels the installation in failure messages.
	Name string
	// Bin is the stagegate binary built from this repository.
	Bin string
	// Dir holds config.yaml, tokens.yaml, keys/ and certs/ (with
	// WithDev, the data directory itself).
	Dir        string
	DataDir    string
	ConfigPath string // empty with WithDev and no WithConfig
	CertDir    string
	KeysDir    string
	// CAFile is the CA that signed the serving certificate.
	CAFile string
	// Addr is the promotion API's host:port and URL its https:// URL.
	Addr, URL string
	// WebhookURL is the admission listener's URL with
	// WithAdmissionListener, and URL otherwise.
	WebhookURL string
	// DevRegistry is the embedded registry's host:port with WithDev.
	DevRegistry string
	// Token is the first identity's bearer token (WithDevToken: the one
	// serve --dev made); Tokens all of them, in the order given.
	Token  string
	Tokens []string

	t    testing.TB
	o    stagegateOptions
	env  []string // serve's and Run's, on top of os.Environ
	args []string // of serve

	mu   sync.Mutex
	proc *process.Process // the last one started
}

// StagegateOption configures StartStagegate.
type StagegateOption func(*stagegateOptions)

type stagegateOptions struct {
	name          string
	dir, dataDir  string
	config        []string
	env, args     []string
	listen        string
	webhookListen string
	clientCAFile  string
	tokens        []tokenSpec
	dev, devToken bool
	writeKeys     func(dir string)
	keyPassword   string
	logLevel      string
	readyTimeout  time.Duration
	noStart       bool
}

type tokenSpec struct {
	token, subject string
	groups         []string
}

// WithName labels the installation in failure messages (default
// "stagegate").
func WithName(name string) StagegateOption { return func(o *stagegateOptions) { o.name = name } }

// WithDir puts the installation in dir instead of a new test directory.
func WithDir(dir string) StagegateOption { return func(o *stagegateOptions) { o.dir = dir } }

// WithDataDir puts the data directory (the ledger) at dir, e.g. on a small
// tmpfs or another installation's, instead of <Dir>/data.
func WithDataDir(dir string) StagegateOption { return func(o *stagegateOptions) { o.dataDir = dir } }

// WithConfig merges a YAML document over the generated config file, maps
// key by key (stages, registries, registrySource, …). With WithDev it is
// the whole config file, passed with --config.
func WithConfig(yamlDoc string) StagegateOption {
	return func(o *stagegateOptions) { o.config = append(o.config, yamlDoc) }
}

// WithEnv adds KEY=value pairs to the environment of serve and of Run.
func WithEnv(kv ...string) StagegateOption {
	return func(o *stagegateOptions) { o.env = append(o.env, kv...) }
}

// WithArgs adds flags to `stagegate serve`.
func WithArgs(args ...string) StagegateOption {
	return func(o *stagegateOptions) { o.args = append(o.args, args...) }
}

// WithListen serves the promotion API on addr (default a free loopback
// port).
func WithListen(addr string) StagegateOption { return func(o *stagegateOptions) { o.listen = addr } }

// WithAdmissionListener serves the webhook on addr of its own, taking only
// clients with a certificate signed by clientCAFile (the API server's).
// The address is the caller's because the API server's credentials for
// the webhook name it before serve starts.
func WithAdmissionListener(addr, clientCAFile string) StagegateOption {
	return func(o *stagegateOptions) { o.webhookListen, o.clientCAFile = addr, clientCAFile }
}

// WithToken adds an identity to the token file (hashes only); an empty
// token is replaced with a random one. Without any, serve knows no
// identity (with WithDev, see WithDevToken).
func WithToken(token, subject string, groups ...string) StagegateOption {
	return func(o *stagegateOptions) {
		o.tokens = append(o.tokens, tokenSpec{token: token, subject: subject, groups: groups})
	}
}

// WithDev runs `serve --dev`: serve generates its keys and certificates in
// the data directory and runs an embedded registry with sample images at
// DevRegistry.
func WithDev() StagegateOption { return func(o *stagegateOptions) { o.dev = true } }

// WithDevToken drops the identities given so far and lets serve --dev
// make its own token, which becomes Token.
func WithDevToken() StagegateOption {
	return func(o *stagegateOptions) { o.dev, o.devToken, o.tokens = true, true, nil }
}

// WithKeys has write put the key files (cosign.key, cosign.pub, log.key,
// log.pub) into the keys directory instead of running `stagegate keys
// generate`, and sets no key password: e.g. signingtest.WriteKeyDir, so
// that the test can verify what serve signs (give WithConfig the logOrigin
// the log key names). It is a function rather than a dependency on
// signingtest because internal packages' tests use this framework too.
func WithKeys(write func(dir string)) StagegateOption {
	return func(o *stagegateOptions) { o.writeKeys = write }
}

// WithKeyPassword encrypts the generated cosign key with pw instead of
// DefaultKeyPassword.
func WithKeyPassword(pw string) StagegateOption {
	return func(o *stagegateOptions) { o.keyPassword = pw }
}

// WithLogLevel passes --log-level to serve.
func WithLogLevel(level string) StagegateOption {
	return func(o *stagegateOptions) { o.logLevel = level }
}

// WithReadyTimeout bounds how long serve may take to answer /readyz
// (default 90 s).
func WithReadyTimeout(d time.Duration) StagegateOption {
	return func(o *stagegateOptions) { o.readyTimeout = d }
}

// WithoutStart prepares the installation but starts nothing: the caller
// calls Start or Spawn.
func WithoutStart() StagegateOption { return func(o *stagegateOptions) { o.noStart = true } }

// StartStagegate prepares an installation and starts `stagegate serve` on
// it, waiting until /readyz answers 200. The binary is built once per test
// binary. Serve is stopped when t ends, and its output logged if t failed.
func StartStagegate(t testing.TB, opts ...StagegateOption) *Stagegate {
	t.Helper()
	o := stagegateOptions{name: "stagegate", readyTimeout: 90 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Stagegate{Name: o.name, Bin: BuildBinary(t, "./cmd/stagegate"), t: t, o: o}
	s.Dir = o.dir
	if s.Dir == "" {
		s.Dir = t.TempDir()
	}
	s.Addr = o.listen
	if s.Addr == "" {
		s.Addr = loopback(t)
	}
	s.URL = "https://" + s.Addr
	s.WebhookURL = s.URL
	if o.webhookListen != "" {
		s.WebhookURL = "https://" + o.webhookListen
	}
	s.env = append([]string(nil), o.env...)
	if o.dev {
		s.prepareDev(t)
	} else {
		s.prepare(t)
	}
	s.writeTokens(t)
	if o.logLevel != "" {
		s.args = append(s.args, "--log-level", o.logLevel)
	}
	s.args = append(s.args, o.args...)

	t.Cleanup(func() {
		s.mu.Lock()
		p := s.proc
		s.mu.Unlock()
		if p == nil {
			return
		}
		if t.Failed() {
			t.Logf("%s serve output (tail):\n%s", s.Name, p.Tail(24<<10))
		}
		_ = p.Stop(cleanupGrace)
	})
	if !o.noStart {
		s.Start()
	}
	if o.devToken {
		b, err := os.ReadFile(filepath.Join(s.DataDir, "dev-token"))
		if err != nil {
			t.Fatalf("framework: %s: dev token: %v", s.Name, err)
		}
		s.Token = strings.TrimSpace(string(b))
	}
	return s
}

func loopback(t testing.TB) string { return "127.0.0.1:" + strconv.Itoa(FreePort(t)) }

// prepare generates keys, certificates and the config file.
func (s *Stagegate) prepare(t testing.TB) {
	t.Helper()
	o := s.o
	s.DataDir = o.dataDir
	if s.DataDir == "" {
		s.DataDir = filepath.Join(s.Dir, "data")
	}
	s.CertDir, s.KeysDir = filepath.Join(s.Dir, "certs"), filepath.Join(s.Dir, "keys")
	s.CAFile = filepath.Join(s.CertDir, "ca.crt")
	s.ConfigPath = filepath.Join(s.Dir, "config.yaml")
	cfg := map[string]any{
		"listen":     s.Addr,
		"dataDir":    s.DataDir,
		"tls":        map[string]any{"certFile": filepath.Join(s.CertDir, "tls.crt"), "keyFile": filepath.Join(s.CertDir, "tls.key")},
		"keys":       map[string]any{"dir": s.KeysDir},
		"tokensFile": s.tokensFile(),
	}
	if o.writeKeys != nil {
		o.writeKeys(s.KeysDir)
	} else {
		pw := o.keyPassword
		if pw == "" {
			pw = DefaultKeyPassword
		}
		s.env = append(s.env, "STAGEGATE_KEY_PASSWORD="+pw)
		s.MustRun(t, "keys", "generate", "--dir", s.KeysDir)
	}
	s.MustRun(t, "certs", "generate", "--dir", s.CertDir)
	if o.webhookListen != "" {
		cfg["admission"] = map[string]any{"listen": o.webhookListen, "clientCAFile": o.clientCAFile}
	}
	for _, doc := range o.config {
		var extra map[string]any
		if err := yaml.Unmarshal([]byte(doc), &extra); err != nil {
			t.Fatalf("framework: %s: WithConfig: %v\n%s", s.Name, err, doc)
		}
		merge(cfg, extra)
	}
	writeYAML(t, s.ConfigPath, cfg)
	s.args = []string{"serve", "--config", s.ConfigPath}
}

// prepareDev lays out what serve --dev needs besides what it generates.
func (s *Stagegate) prepareDev(t testing.TB) {
	t.Helper()
	o := s.o
	s.DataDir = o.dataDir
	if s.DataDir == "" {
		s.DataDir = s.Dir
	}
	s.Dir = s.DataDir
	s.CertDir, s.KeysDir = filepath.Join(s.DataDir, "certs"), filepath.Join(s.DataDir, "keys")
	s.CAFile = filepath.Join(s.CertDir, "ca.crt")
	s.DevRegistry = loopback(t)
	if o.keyPassword != "" {
		s.env = append(s.env, "STAGEGATE_KEY_PASSWORD="+o.keyPassword)
	}
	s.args = []string{"serve", "--dev", "--data-dir", s.DataDir, "--cert-dir", s.CertDir,
		"--listen", s.Addr, "--dev-registry", s.DevRegistry}
	if len(o.config) > 0 {
		s.ConfigPath = filepath.Join(s.DataDir, "config.yaml")
		writeTestFile(t, s.ConfigPath, strings.Join(o.config, "\n"))
		s.args = append(s.args, "--config", s.ConfigPath)
	}
}

// tokensFile is where the token file goes: the default place of serve
// --dev, the installation directory otherwise.
func (s *Stagegate) tokensFile() string {
	if s.o.dev {
		return filepath.Join(s.DataDir, "tokens.yaml")
	}
	return filepath.Join(s.Dir, "tokens.yaml")
}

// tokenFile is the token file's format (api.TokenFile), written out here as
// a user writes it; the framework imports no part of serve that internal
// packages' tests, which use it too, would form a cycle with.
type tokenFile struct {
	Tokens []tokenEntry `json:"tokens"`
}

type tokenEntry struct {
	SHA256  string   `json:"sha256"`
	Subject string   `json:"subject"`
	Groups  []string `json:"groups,omitempty"`
}

// writeTokens writes the WithToken identities, hashes only.
func (s *Stagegate) writeTokens(t testing.TB) {
	t.Helper()
	if len(s.o.tokens) == 0 {
		if !s.o.dev {
			writeYAML(t, s.tokensFile(), tokenFile{Tokens: []tokenEntry{}})
		}
		return
	}
	var tf tokenFile
	for _, spec := range s.o.tokens {
		tok := spec.token
		if tok == "" {
			b := make([]byte, 24)
			if _, err := rand.Read(b); err != nil {
				t.Fatal(err)
			}
			tok = "sge2e_" + hex.EncodeToString(b)
		}
		s.Tokens = append(s.Tokens, tok)
		sum := sha256.Sum256([]byte(tok))
		tf.Tokens = append(tf.Tokens, tokenEntry{SHA256: hex.EncodeToString(sum[:]), Subject: spec.subject, Groups: spec.groups})
	}
	s.Token = s.Tokens[0]
	writeYAML(t, s.tokensFile(), tf)
}

// merge copies src over dst, descending into maps present in both.
func merge(dst, src map[string]any) {
	for k, v := range src {
		if sm, ok := v.(map[string]any); ok {
			if dm, ok := dst[k].(map[string]any); ok {
				merge(dm, sm)
				continue
			}
		}
		dst[k] = v
	}
}

func writeYAML(t testing.TB, path string, v any) {
	t.Helper()
	b, err := yaml.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	writeTestFile(t, path, string(b))
}

// Start starts serve on the installation and waits until /readyz answers
// 200. Starting while serve runs fails the test.
func (s *Stagegate) Start() *process.Process {
	s.t.Helper()
	p := s.Spawn()
	if err := s.WaitReady(p); err != nil {
		_ = p.Stop(cleanupGrace)
		s.t.Fatalf("framework: %s: %v\n%s", s.Name, err, p.Tail(8<<10))
	}
	return p
}

// Spawn starts serve without waiting for it: for a serve that is expected
// to refuse to start.
func (s *Stagegate) Spawn() *process.Process {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil && !s.proc.Exited() {
		s.t.Fatalf("framework: %s: serve already running", s.Name)
	}
	p, err := process.Start(context.Background(), s.Name, s.Bin, s.args, process.WithDir(s.Dir), process.WithEnv(s.env...))
	if err != nil {
		s.t.Fatalf("framework: %v", err)
	}
	s.proc = p
	return p
}

// WaitReady polls p's /readyz until it answers 200, p exits, or the ready
// timeout passes. The CA is read once it exists: serve --dev writes it.
func (s *Stagegate) WaitReady(p *process.Process) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.readyTimeout)
	defer cancel()
	var c *http.Client
	defer func() {
		if c != nil {
			c.CloseIdleConnections()
		}
	}()
	return p.Poll(ctx, func(ctx context.Context) error {
		if c == nil {
			pool, err := s.caPool()
			if err != nil {
				return err
			}
			c = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
				TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
			}}
		}
		return process.HTTPStatus(c, s.URL+"/readyz", http.StatusOK)(ctx)
	})
}

// Process is the serve process started last, or nil.
func (s *Stagegate) Process() *process.Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

// Stop sends serve SIGTERM and returns its exit status; after 60 s it
// kills it and returns process.ErrKilled. Stopping a stopped serve returns
// its last exit status.
func (s *Stagegate) Stop() error {
	if p := s.Process(); p != nil {
		return p.Stop(stopGrace)
	}
	return nil
}

// Kill sends serve SIGKILL and waits for it: a crash.
func (s *Stagegate) Kill() {
	if p := s.Process(); p != nil {
		p.Kill()
	}
}

// Signal sends sig to the running serve.
func (s *Stagegate) Signal(sig os.Signal) error {
	p := s.Process()
	if p == nil {
		return errors.New("framework: serve not started")
	}
	return p.Signal(sig)
}

// Restart stops a running serve (SIGTERM), failing the test unless it
// exits 0, and starts it again on the same installation. After a Kill it
// only starts.
func (s *Stagegate) Restart() *process.Process {
	s.t.Helper()
	if p := s.Process(); p != nil && !p.Exited() {
		if err := p.Stop(stopGrace); err != nil {
			s.t.Fatalf("framework: %s: stop before restart: %v", s.Name, err)
		}
	}
	return s.Start()
}

// Logs is what the last serve process wrote.
func (s *Stagegate) Logs() string {
	if p := s.Process(); p != nil {
		return p.Output()
	}
	return ""
}

// CAPool trusts CAFile as it is now (a test may replace it).
func (s *Stagegate) CAPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pool, err := s.caPool()
	if err != nil {
		t.Fatalf("framework: %s: %v", s.Name, err)
	}
	return pool
}

func (s *Stagegate) caPool() (*x509.CertPool, error) {
	b, err := os.ReadFile(s.CAFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no certificate in %s", s.CAFile)
	}
	return pool, nil
}

// Client is an HTTP client trusting CAFile as it is now.
func (s *Stagegate) Client(t testing.TB) *http.Client {
	t.Helper()
	return &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: s.CAPool(t), MinVersion: tls.VersionTLS12},
	}}
}

// ClientFlags appends the flags that point a client command at serve.
func (s *Stagegate) ClientFlags(args ...string) []string {
	return append(args, "--server", s.URL, "--ca-file", s.CAFile)
}

// Run runs the stagegate binary in Dir with serve's environment and Token
// as STAGEGATE_TOKEN. A non-zero exit is returned, not reported to t.
func (s *Stagegate) Run(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Bin, args...)
	cmd.Dir = s.Dir
	cmd.Env = append(append(os.Environ(), s.env...), "STAGEGATE_TOKEN="+s.Token)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// MustRun is Run failing the test on a non-zero exit.
func (s *Stagegate) MustRun(t testing.TB, args ...string) string {
	t.Helper()
	out, stderr, err := s.Run(t, args...)
	if err != nil {
		t.Fatalf("%s: stagegate %s: %v\n%s", s.Name, strings.Join(args, " "), err, stderr)
	}
	return out
}
