// Package app wires stagegate's parts together from a validated config:
// ledger, keys, policy, registry, promotion, admission and the HTTP mux.
// It is what `serve` runs and what the end-to-end tests start.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/federation"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/policies"
)

// App is a running stagegate without its listener.
type App struct {
	Ledger   *ledger.Ledger
	Service  *promotion.Service
	Reviewer *admission.Reviewer
	// Handler serves the promotion API, and the webhook too unless it has
	// a listener of its own (config admission.listen).
	Handler http.Handler
	// AdmissionHandler serves the webhook on admission.listen; nil when it
	// shares Handler's listener.
	AdmissionHandler http.Handler
	ready            atomic.Bool
	federation       *federation.Source
	// stopPublisher ends the revocation list's publisher; workers waits
	// for the background work that writes or reads the ledger.
	stopPublisher context.CancelFunc
	workers       sync.WaitGroup
}

// Keys is the loaded signing material.
type Keys struct {
	Signer      *signing.Signer
	Verifier    *signing.Verifier
	LogSigner   note.Signer
	LogVerifier note.Verifier
}

// LoadKeys loads the cosign key pair and the log key pair named by cfg.
func LoadKeys(cfg *config.Config) (Keys, error) {
	var k Keys
	var err error
	if k.Signer, err = signing.LoadSigner(cfg.Keys.CosignKey, cfg.Keys.Password); err != nil {
		return k, err
	}
	if k.Verifier, err = signing.LoadVerifier(cfg.Keys.CosignPub); err != nil {
		return k, err
	}
	if k.LogSigner, err = signing.LoadLogSigner(cfg.Keys.LogKey); err != nil {
		return k, err
	}
	if k.LogVerifier, err = signing.LoadLogVerifier(cfg.Keys.LogPub); err != nil {
		return k, err
	}
	return k, nil
}

// LoadVerifiers loads only the public halves, for offline checks.
func LoadVerifiers(cfg *config.Config) (*signing.Verifier, note.Verifier, error) {
	v, err := signing.LoadVerifier(cfg.Keys.CosignPub)
	if err != nil {
		return nil, nil, err
	}
	lv, err := signing.LoadLogVerifier(cfg.Keys.LogPub)
	if err != nil {
		return nil, nil, err
	}
	return v, lv, nil
}

// PolicyFS is the policy directory of cfg, or the built-in policies.
func PolicyFS(cfg *config.Config) fs.FS {
	if cfg.PolicyDir != "" {
		return os.DirFS(cfg.PolicyDir)
	}
	return policies.FS
}

// NewPolicy compiles the policies of cfg.
func NewPolicy(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*policy.Engine, error) {
	return policy.New(ctx, PolicyFS(cfg), cfg.PolicyData(), policy.WithLogger(logger))
}

// NewRegistryClient builds the registry client of cfg.
func NewRegistryClient(cfg *config.Config) (*registry.Client, error) {
	opts := []registry.Option{registry.WithTimeout(cfg.RegistryTimeout.Std())}
	for _, r := range cfg.Registries {
		h := registry.Host{Insecure: r.Insecure}
		if r.CAFile != "" {
			pool, err := registry.LoadCAFile(r.CAFile)
			if err != nil {
				return nil, err
			}
			h.RootCAs = pool
		}
		opts = append(opts, registry.WithHost(r.Host, h))
		if cfg.RegistryAllowList {
			opts = append(opts, registry.WithAllowList(r.Host))
		}
	}
	return registry.New(opts...), nil
}

// Modes returns the admission mode of each stage.
func Modes(cfg *config.Config) map[string]admission.Mode {
	m := make(map[string]admission.Mode, len(cfg.Stages))
	for _, s := range cfg.Stages {
		m[s.Name] = admission.Mode(s.Mode)
	}
	return m
}

// ReviewerOptions are the admission options every Reviewer gets from the
// config, so that `check` decides exactly as the webhook of `serve`.
func ReviewerOptions(cfg *config.Config, rc admission.Resolver) []admission.Option {
	return []admission.Option{
		admission.WithStages(cfg.StageNames()),
		admission.WithModes(Modes(cfg)),
		admission.WithResolver(rc),
		admission.WithResolverTimeout(cfg.ResolveTimeout.Std()),
		admission.WithResolverCache(admission.DefaultResolverCacheSize, cfg.Admission.TagCacheTTL.Std(), admission.DefaultResolverErrorTTL),
		admission.WithReviewTimeout(cfg.Admission.Timeout.Std()),
		admission.WithMaxImages(cfg.Admission.MaxImages),
	}
}

// New opens the ledger and builds every part. The caller must Close it.
func New(ctx context.Context, cfg *config.Config, logger *slog.Logger, reg prometheus.Registerer) (*App, error) {
	keys, err := LoadKeys(cfg)
	if err != nil {
		return nil, err
	}
	// The whole ledger is checked as it opens, not only its tail:
	// admission decides from the state index, which must be what the
	// signed entries imply, not what the file says (see
	// ledger.WithStartupVerify for the cost). A stop compacts the file
	// only once a quarter GB is free (an import, an index rebuild):
	// compaction rewrites the whole file at about 130 MB/s
	// (BenchmarkCompact), some 20 s for a 10^6-entry ledger, most of a
	// pod's default 30 s grace; `stagegate ledger compact` does it offline.
	lopts := []ledger.Option{ledger.WithSigner(keys.LogSigner), ledger.WithStartupVerify(keys.LogVerifier), ledger.WithLogger(logger),
		ledger.WithCompactOnClose(256 << 20)}
	if cfg.Ledger.CheckpointFile != "" {
		lopts = append(lopts, ledger.WithCheckpointGuard(cfg.Ledger.CheckpointFile, keys.LogVerifier))
	}
	l, err := ledger.Open(cfg.LedgerPath(), lopts...)
	if verr := (*ledger.VerifyError)(nil); errors.As(err, &verr) {
		return nil, fmt.Errorf("refusing to serve a ledger that fails verification: %w\n"+
			"  run `stagegate ledger verify --data-dir %s` to find the bad entry; restore the ledger from a backup or rebuild it with `stagegate ledger import` from a verified export",
			err, cfg.DataDir)
	}
	if err != nil {
		return nil, err
	}
	a := &App{Ledger: l}
	pol, err := NewPolicy(ctx, cfg, logger)
	if err != nil {
		l.Close()
		return nil, err
	}
	rc, err := NewRegistryClient(cfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	m := newMetrics(reg)
	att := oci.NewAttacher(oci.WithRemoteOptions(rc.RemoteOptions), oci.WithReferenceParser(rc.ParseReference), oci.WithLogger(logger))
	evidenceKeys, err := EvidenceKeys(cfg)
	if err != nil {
		l.Close()
		return nil, err
	}
	a.Service = promotion.New(l, keys.Signer, pol, rc, cfg.StageNames(), promotion.WithLogger(logger),
		promotion.WithRegistry(att, StageOptions(cfg), evidenceKeys))
	reviewOpts := []admission.Option{}
	if cfg.RegistrySource.Enabled {
		trusted, err := TrustedKeys(cfg)
		if err != nil {
			l.Close()
			return nil, err
		}
		a.federation = federation.New(l, federation.FromRegistry(att, logger), trusted,
			federation.WithTimeout(cfg.RegistrySource.Timeout.Std()),
			federation.WithRefresh(cfg.RegistrySource.Refresh.Std()),
			federation.WithFreshness(att, cfg.RegistrySource.RevocationLists, cfg.RegistrySource.MaxAge.Std(), cfg.FreshStages()),
			federation.WithLogger(logger))
		reviewOpts = append(reviewOpts, admission.WithFallback(a.federation))
	}
	var pub *revlist.Publisher
	if ref := cfg.RevocationList.Reference; ref != "" {
		pub = revlist.NewPublisher(l, keys.LogVerifier, keys.Signer, att, ref,
			revlist.WithInterval(cfg.RevocationList.Every.Std()), revlist.WithLogger(logger))
	}
	reviewOpts = append(reviewOpts, ReviewerOptions(cfg, rc)...)
	a.Reviewer = admission.NewReviewer(l, pol, append(reviewOpts,
		admission.WithRecorder(a.Service),
		admission.WithMetrics(m),
		admission.WithLogger(logger),
	)...)
	tokens := &api.TokenFile{}
	if cfg.TokensFile != "" {
		if tokens, err = api.LoadTokens(cfg.TokensFile); err != nil {
			l.Close()
			return nil, err
		}
	}
	promAPI := api.New(a.Service, l, api.NewAuthenticator(tokens), cfg.StageNames(), api.WithLogger(logger),
		api.WithRateLimit(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst), api.WithReviewer(a.Reviewer))

	webhook := admission.NewHandler(a.Reviewer, admission.WithHandlerLogger(logger))
	health := func(mux *http.ServeMux) {
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !a.ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte("ok\n"))
		})
	}
	mux := http.NewServeMux()
	promAPI.Register(mux)
	health(mux)
	if g, ok := reg.(prometheus.Gatherer); ok {
		mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	}
	if cfg.Admission.Listen == "" {
		// One listener for both, as on a developer's machine.
		mux.Handle("/admission/", webhook)
	} else {
		// The webhook's own listener serves nothing but the webhook (and
		// the probes), so that a NetworkPolicy can open it to the API
		// server alone, and its client certificate can be required.
		wmux := http.NewServeMux()
		wmux.Handle("/admission/", webhook)
		health(wmux)
		a.AdmissionHandler = m.instrument(wmux)
	}
	a.Handler = m.instrument(mux)
	// The background work starts last, when no error path remains that
	// would have to stop it.
	if a.federation != nil {
		a.federation.Start()
	}
	if pub != nil {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		a.stopPublisher = cancel
		a.workers.Add(1)
		go func() {
			defer a.workers.Done()
			pub.Run(ctx)
		}()
	}
	a.ready.Store(true)
	return a, nil
}

// NewRegistry returns a Prometheus registry with the Go and process
// collectors.
func NewRegistry() *prometheus.Registry {
	r := prometheus.NewRegistry()
	r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return r
}

// Close closes the ledger.
func (a *App) Close() error {
	a.ready.Store(false)
	// Background refreshes write to the ledger: stop them first.
	if a.federation != nil {
		a.federation.Close()
	}
	if a.stopPublisher != nil {
		a.stopPublisher()
	}
	a.workers.Wait()
	return a.Ledger.Close()
}
