// Package app is stagegate's composition root: Build turns a validated
// config into every part `serve` runs (ledger, keys, policy, registry
// client, promotion service, admission reviewer, federation, revocation
// list publisher, HTTP handlers, and continuous validation when enabled).
// `serve`, `check` and the bench use Build, each with its options; nothing
// else assembles these parts, so that what `check` decides and what the
// bench measures is what the webhook runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

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

// App is a stagegate without its listener: what Build made, in one value.
// Start starts its background work; Close stops and closes everything, in
// the reverse order of construction.
type App struct {
	// Ledger is the ledger of the config, read-only under WithReadOnly.
	Ledger *ledger.Ledger
	// Policy is the compiled policy of the config.
	Policy *policy.Engine
	// Keys is the signing material; under WithReadOnly only the public
	// halves (Verifier, LogVerifier) are loaded.
	Keys Keys
	// Service is the promotion use case; nil under WithReadOnly.
	Service *promotion.Service
	// Reviewer is the admission decision, as the webhook makes it.
	Reviewer *admission.Reviewer
	// Handler serves the promotion API, and the webhook too unless it has
	// a listener of its own (config admission.listen). Nil under
	// WithReadOnly.
	Handler http.Handler
	// AdmissionHandler serves the webhook on admission.listen; nil when it
	// shares Handler's listener.
	AdmissionHandler http.Handler

	opts       options
	ready      atomic.Bool
	federation *federation.Source
	publisher  *revlist.Publisher
	continuous *continuous
	// sources are the informers on Flux's source objects (admission.sources).
	sources *fluxSources
	// completer completes the requests that collected their approvals
	// while their stage was closed, at its opening (nil without approvals).
	completer *promotion.Completer
	// replica is set when the config has a cluster (cluster.go).
	replica *replica
	// closers undo what Build and Start did, run last first by Close.
	mu      sync.Mutex
	closers []func() error
	started bool
}

// Keys is the loaded signing material.
type Keys struct {
	Signer      *signing.Signer
	Verifier    *signing.Verifier
	LogSigner   note.Signer
	LogVerifier note.Verifier
}

// Option configures Build.
type Option func(*options)

type options struct {
	logger     *slog.Logger
	registerer prometheus.Registerer
	readOnly   bool
	noSync     bool
	ledgerPath string
	resolver   promotion.Resolver
	dev        *DevOptions
	now        func() time.Time
	svcNow     func() time.Time
	svcAfter   func(time.Duration) <-chan time.Time
}

// WithLogger sets the logger of every part (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithRegisterer registers the metrics with reg; when reg is also a
// prometheus.Gatherer, the API serves it on GET /metrics. Without it the
// metrics are counted and not exported.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *options) { o.registerer = reg }
}

// WithProcessMetrics is WithRegisterer with a registry of the App's own
// that holds the Go and process collectors too, as `serve` exports them.
func WithProcessMetrics() Option {
	return func(o *options) {
		r := prometheus.NewRegistry()
		r.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		o.registerer = r
	}
}

// WithReadOnly builds what `check` needs to decide as the webhook does, and
// nothing that writes: the ledger is opened read-only (and not verified
// whole, which a 10^6-entry ledger takes a minute for), no private key is
// loaded, and there is no promotion service, API or revocation-list
// publisher. What the registry source imports goes to a scratch ledger in
// a temporary directory (see overlay), so the local ledger is never
// changed; Start reads the revocation lists once instead of in the
// background.
func WithReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithNoSync opens the ledger without fsync and without compaction on
// close, for the bench's fixtures, which are rebuilt rather than recovered
// after a crash.
func WithNoSync() Option { return func(o *options) { o.noSync = true } }

// WithLedgerFile reads or writes the ledger at path instead of the config's
// (`check --ledger`).
func WithLedgerFile(path string) Option { return func(o *options) { o.ledgerPath = path } }

// WithResolver resolves the images of promotions with r instead of the
// registry client, so that the bench's promotion scenario measures
// stagegate (policy, signing, durable commit) and not a registry.
func WithResolver(r promotion.Resolver) Option { return func(o *options) { o.resolver = r } }

// WithClock replaces time.Now where a replica judges its staleness.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithServiceClock replaces time.Now in the promotion service, and
// time.After where its completer waits for a window to open, so that a
// test moves time instead of waiting for it.
func WithServiceClock(now func() time.Time, after func(time.Duration) <-chan time.Time) Option {
	return func(o *options) { o.svcNow, o.svcAfter = now, after }
}

// WithDev prepares what `serve --dev` needs before anything is built (see
// DevOptions); the embedded registry it starts is stopped by Close.
func WithDev(d DevOptions) Option { return func(o *options) { o.dev = &d } }

// Build builds every part from cfg. It starts no background work (Start
// does), and on an error closes whatever it had made. The caller must Close
// the App.
func Build(ctx context.Context, cfg *config.Config, opts ...Option) (_ *App, err error) {
	a := &App{}
	for _, o := range opts {
		o(&a.opts)
	}
	if a.opts.logger == nil {
		a.opts.logger = slog.New(slog.DiscardHandler)
	}
	logger := a.opts.logger
	for _, w := range cfg.Warnings() {
		logger.Warn(w)
	}
	defer func() {
		if err == nil {
			return
		}
		if cerr := a.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if d := a.opts.dev; d != nil {
		emb, err := prepareDev(ctx, cfg, *d)
		if err != nil {
			return nil, err
		}
		a.onClose(func() error { emb.Close(); return nil })
	}
	if a.opts.readOnly {
		a.Keys.Verifier, a.Keys.LogVerifier, err = LoadVerifiers(cfg)
	} else {
		a.Keys, err = loadKeys(cfg)
	}
	if err != nil {
		return nil, err
	}
	var reads readLedger
	var writes promotion.Ledger
	if cfg.Cluster != nil && !a.opts.readOnly {
		// A replica: the ledger is the FSM's, replaced by a snapshot
		// install, so readers take it per call and writes go through Raft.
		if a.replica, err = a.buildReplica(cfg); err != nil {
			return nil, err
		}
		a.onClose(a.replica.close)
		a.replica.register(a.opts.registerer)
		a.Ledger = a.replica.node.FSM().Ledger()
		reads, writes = liveLedger{a.replica.node.FSM()}, a.replica.node
	} else {
		if a.Ledger, err = a.openLedger(cfg); err != nil {
			return nil, err
		}
		a.onClose(a.Ledger.Close)
		reads, writes = a.Ledger, a.Ledger
	}
	if a.Policy, err = newPolicy(ctx, cfg, logger); err != nil {
		return nil, err
	}
	rc, err := newRegistryClient(cfg)
	if err != nil {
		return nil, err
	}
	m := newMetrics(a.opts.registerer)
	att := oci.NewAttacher(oci.WithRemoteOptions(rc.RemoteOptions), oci.WithReferenceParser(rc.ParseReference), oci.WithLogger(logger))

	var states admission.StateLookup = reads
	if a.replica != nil {
		states = freshStates{r: a.replica, states: reads}
	}
	reviewOpts := reviewerOptions(cfg, rc)
	if cfg.Admission.Sources.Enabled && !a.opts.readOnly {
		if a.sources, err = buildSources(cfg.Admission.Sources); err != nil {
			return nil, err
		}
		reviewOpts = append(reviewOpts, admission.WithSources(a.sources))
	}
	if cfg.RegistrySource.Enabled {
		trusted, err := TrustedKeys(cfg)
		if err != nil {
			return nil, err
		}
		var imports federation.Ledger = a.Ledger
		if a.opts.readOnly {
			ov, err := newOverlay(a.Ledger)
			if err != nil {
				return nil, err
			}
			a.onClose(ov.Close)
			imports, states = ov, ov
		} else if cfg.ContinuousValidation.Enabled {
			imports = a.observedImports(imports)
		}
		a.federation = federation.New(imports, federation.FromRegistry(att, logger), trusted,
			federation.WithTimeout(cfg.RegistrySource.Timeout.Std()),
			federation.WithRefresh(cfg.RegistrySource.Refresh.Std()),
			federation.WithFreshness(att, cfg.RegistrySource.RevocationLists, cfg.RegistrySource.MaxAge.Std(), cfg.FreshStages()),
			federation.WithLogger(logger))
		// Its refreshes write to the ledger: closed before it.
		a.onClose(func() error { a.federation.Close(); return nil })
		reviewOpts = append(reviewOpts, admission.WithFallback(a.federation))
	}
	// Continuous validation's dry runs are decided as the webhook decides,
	// but are not admission decisions: not counted, and not recorded.
	dryRunOpts := append(slices.Clip(reviewOpts), admission.WithLogger(logger))
	reviewOpts = append(reviewOpts, admission.WithMetrics(m), admission.WithLogger(logger))

	if a.opts.readOnly {
		// No recorder: check asks for dry runs, which record nothing.
		a.Reviewer = admission.NewReviewer(states, a.Policy, reviewOpts...)
		return a, nil
	}

	evidenceKeys, err := EvidenceKeys(cfg)
	if err != nil {
		return nil, err
	}
	var resolver promotion.Resolver = rc
	if a.opts.resolver != nil {
		resolver = a.opts.resolver
	}
	windowRules, err := WindowRules(cfg)
	if err != nil {
		return nil, err
	}
	promOpts := []promotion.Option{promotion.WithLogger(logger), promotion.WithRegistry(att, StageOptions(cfg), evidenceKeys),
		promotion.WithDuties(Duties(cfg)), promotion.WithApprovals(ApprovalRules(cfg)), promotion.WithWindows(windowRules)}
	if cfg.ContinuousValidation.Enabled {
		// No recorder: its dry runs record nothing, not even a
		// break-glass. With a registry source, its fallback may still
		// import what the registry attests, as admission's does.
		if a.continuous, err = buildContinuous(cfg, reads, admission.NewReviewer(states, a.Policy, dryRunOpts...), a.opts); err != nil {
			return nil, err
		}
		if a.replica != nil {
			// Every replica applies every entry, also those its service
			// never saw (made through the leader), so the FSM tells.
			a.replica.node.FSM().OnApply(a.continuous.observe)
		} else {
			promOpts = append(promOpts, promotion.WithObserver(a.continuous.observe))
		}
	}
	if a.replica != nil {
		promOpts = append(promOpts, promotion.WithReplicaWaiter(a.replica))
	}
	if a.opts.svcNow != nil {
		promOpts = append(promOpts, promotion.WithClock(a.opts.svcNow))
	}
	a.Service = promotion.New(writes, a.Keys.Signer, a.Policy, resolver, cfg.StageNames(), promOpts...)
	if len(ApprovalRules(cfg)) > 0 {
		var copts []promotion.CompleterOption
		if a.replica != nil {
			// Every replica sees the waiting requests; the leader alone
			// completes them, as it alone appends.
			copts = append(copts, promotion.WithLeader(a.replica.node.IsLeader))
		}
		if a.opts.svcAfter != nil {
			copts = append(copts, promotion.WithTimer(a.opts.svcAfter))
		}
		a.completer = a.Service.NewCompleter(copts...)
	}
	if ref := cfg.RevocationList.Reference; ref != "" {
		popts := []revlist.Option{revlist.WithInterval(cfg.RevocationList.Every.Std()), revlist.WithLogger(logger)}
		if a.replica != nil {
			// One signer at the tag: the leader, as it alone appends.
			// A new leader publishes at once (see revlist.WithLeader).
			changes, stop := a.replica.node.LeadershipChanges()
			a.onClose(func() error { stop(); return nil })
			popts = append(popts, revlist.WithLeader(a.replica.node, changes))
		}
		a.publisher = revlist.NewPublisher(reads, a.Keys.LogVerifier, a.Keys.Signer, att, ref, popts...)
	}
	var recorder admission.Recorder = a.Service
	if a.replica != nil {
		a.replica.svc = a.Service
		recorder = breakGlassRecorder{r: a.replica, svc: a.Service}
	}
	a.Reviewer = admission.NewReviewer(states, a.Policy, append(reviewOpts, admission.WithRecorder(recorder))...)
	if err := a.buildHandlers(cfg, m, reads); err != nil {
		return nil, err
	}
	return a, nil
}

// openLedger opens the ledger as the options ask.
func (a *App) openLedger(cfg *config.Config) (*ledger.Ledger, error) {
	path := cfg.LedgerPath()
	if a.opts.ledgerPath != "" {
		path = a.opts.ledgerPath
	}
	if a.opts.readOnly {
		return ledger.Open(path, ledger.WithReadOnly(), ledger.WithLogger(a.opts.logger))
	}
	// The whole ledger is checked as it opens, not only its tail:
	// admission decides from the state index, which must be what the
	// signed entries imply, not what the file says (see
	// ledger.WithStartupVerify for the cost). A stop compacts the file
	// only once a quarter GB is free (an import, an index rebuild):
	// compaction rewrites the whole file at about 130 MB/s
	// (BenchmarkCompact), some 20 s for a 10^6-entry ledger, most of a
	// pod's default 30 s grace; `stagegate ledger compact` does it offline.
	lopts := []ledger.Option{ledger.WithSigner(a.Keys.LogSigner), ledger.WithStartupVerify(a.Keys.LogVerifier), ledger.WithLogger(a.opts.logger)}
	if a.opts.noSync {
		lopts = append(lopts, ledger.WithNoSync())
	} else {
		lopts = append(lopts, ledger.WithCompactOnClose(256<<20))
	}
	if cfg.Ledger.CheckpointFile != "" {
		lopts = append(lopts, ledger.WithCheckpointGuard(cfg.Ledger.CheckpointFile, a.Keys.LogVerifier))
	}
	l, err := ledger.Open(path, lopts...)
	if verr := (*ledger.VerifyError)(nil); errors.As(err, &verr) {
		return nil, fmt.Errorf("refusing to serve a ledger that fails verification: %w\n"+
			"  run `stagegate ledger verify --data-dir %s` to find the bad entry; restore the ledger from a backup or rebuild it with `stagegate ledger import` from a verified export",
			err, cfg.DataDir)
	}
	return l, err
}

// buildHandlers makes the promotion API, the webhook and the probes.
func (a *App) buildHandlers(cfg *config.Config, m *metrics, reads readLedger) error {
	logger := a.opts.logger
	tokens := &api.TokenFile{}
	if cfg.TokensFile != "" {
		var err error
		if tokens, err = api.LoadTokens(cfg.TokensFile); err != nil {
			return err
		}
	}
	auth := api.NewAuthenticator(tokens)
	apiOpts := []api.Option{api.WithLogger(logger), api.WithRateLimit(cfg.RateLimit.PerSecond, cfg.RateLimit.Burst), api.WithReviewer(a.Reviewer),
		api.WithApprovals(a.Service), api.WithStages(a.Service)}
	if a.continuous != nil {
		apiOpts = append(apiOpts, api.WithInventory(a.continuous))
	}
	promAPI := api.New(a.Service, reads, auth, cfg.StageNames(), apiOpts...)

	webhook := admission.NewHandler(a.Reviewer, admission.WithHandlerLogger(logger))
	health := func(mux *http.ServeMux) {
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
			if !a.ready.Load() {
				http.Error(w, "not ready", http.StatusServiceUnavailable)
				return
			}
			if a.replica != nil {
				if err := a.replica.ready(); err != nil {
					http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
					return
				}
			}
			w.Write([]byte("ok\n"))
		})
	}
	mux := http.NewServeMux()
	promAPI.Register(mux)
	if a.replica != nil {
		mux = a.replica.wire(mux, auth, logger)
	}
	if err := a.registerWeb(cfg, mux, reads, auth); err != nil {
		return err
	}
	health(mux)
	if g, ok := a.opts.registerer.(prometheus.Gatherer); ok {
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
	return nil
}

// Start starts the background work, the registry source's refreshes, the
// revocation list's publisher, the completer of requests waiting for a
// window (on the Raft leader only, in a cluster) and continuous validation
// (while this replica holds its Lease), and makes /readyz answer ready. Under
// WithReadOnly it reads the revocation lists once, now, so that a fresh
// stage decides as a serve that has read them. ctx bounds that read; the
// background work runs until Close.
func (a *App) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("app: started twice")
	}
	a.started = true
	if a.federation != nil {
		if a.opts.readOnly {
			if err := a.federation.RefreshLists(ctx); err != nil {
				// Fresh says why to every decision that needs the list.
				a.opts.logger.Warn("reading a revocation list failed", "err", err)
			}
		} else {
			a.federation.Start()
		}
	}
	if a.publisher != nil {
		pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var wg sync.WaitGroup
		wg.Go(func() { a.publisher.Run(pctx) })
		// Pushed after everything Build made: stopped before the ledger
		// it reads closes.
		a.closers = append(a.closers, func() error { cancel(); wg.Wait(); return nil })
	}
	if a.completer != nil {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		var wg sync.WaitGroup
		wg.Go(func() { a.completer.Run(cctx) })
		// Stopped before the ledger it writes to closes.
		a.closers = append(a.closers, func() error { cancel(); wg.Wait(); return nil })
	}
	if a.sources != nil {
		a.sources.start()
		a.closers = append(a.closers, func() error { a.sources.stop(); return nil })
	}
	if a.continuous != nil {
		stop, err := a.continuous.start(context.WithoutCancel(ctx))
		if err != nil {
			return err
		}
		// Stopped, and its Lease released, before the ledger it reads
		// closes.
		a.closers = append(a.closers, func() error { stop(); return nil })
	}
	a.ready.Store(true)
	return nil
}

// onClose pushes fn on the stack that Close runs.
func (a *App) onClose(fn func() error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closers = append(a.closers, fn)
}

// Close stops the background work and closes every part, last made first
// closed: the workers that write to the ledger stop before it closes. It
// returns every error; a second Close does nothing.
func (a *App) Close() error {
	a.ready.Store(false)
	a.mu.Lock()
	closers := a.closers
	a.closers = nil
	a.mu.Unlock()
	var errs []error
	for _, fn := range slices.Backward(closers) {
		if err := fn(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// loadKeys loads the cosign key pair and the log key pair named by cfg.
func loadKeys(cfg *config.Config) (Keys, error) {
	var k Keys
	var err error
	if k.Signer, err = signing.LoadSigner(cfg.Keys.CosignKey, cfg.Keys.Password); err != nil {
		return k, err
	}
	if k.Verifier, k.LogVerifier, err = LoadVerifiers(cfg); err != nil {
		return k, err
	}
	if k.LogSigner, err = signing.LoadLogSigner(cfg.Keys.LogKey); err != nil {
		return k, err
	}
	return k, nil
}

// LoadVerifiers loads only the public halves of cfg's keys. It stays
// exported for the offline commands (`ledger verify`, `export`, `import`),
// which check a ledger file without building a stagegate around it.
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

// policyFS is the policy directory of cfg, or the built-in policies.
func policyFS(cfg *config.Config) fs.FS {
	if cfg.PolicyDir != "" {
		return os.DirFS(cfg.PolicyDir)
	}
	return policies.FS
}

// newPolicy compiles the policies of cfg.
func newPolicy(ctx context.Context, cfg *config.Config, logger *slog.Logger) (*policy.Engine, error) {
	return policy.New(ctx, policyFS(cfg), cfg.PolicyData(), policy.WithLogger(logger))
}

// newRegistryClient builds the registry client of cfg.
func newRegistryClient(cfg *config.Config) (*registry.Client, error) {
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

// modes returns the admission mode of each stage.
func modes(cfg *config.Config) map[string]admission.Mode {
	m := make(map[string]admission.Mode, len(cfg.Stages))
	for _, s := range cfg.Stages {
		m[s.Name] = admission.Mode(s.Mode)
	}
	return m
}

// reviewerOptions are the admission options every Reviewer gets from the
// config.
func reviewerOptions(cfg *config.Config, rc admission.Resolver) []admission.Option {
	return []admission.Option{
		admission.WithStages(cfg.StageNames()),
		admission.WithModes(modes(cfg)),
		admission.WithResolver(rc),
		admission.WithResolverTimeout(cfg.ResolveTimeout.Std()),
		admission.WithResolverCache(admission.DefaultResolverCacheSize, cfg.Admission.TagCacheTTL.Std(), admission.DefaultResolverErrorTTL),
		admission.WithReviewTimeout(cfg.Admission.Timeout.Std()),
		admission.WithMaxImages(cfg.Admission.MaxImages),
		admission.WithBreakGlassRules(BreakGlassRules(cfg)),
	}
}
