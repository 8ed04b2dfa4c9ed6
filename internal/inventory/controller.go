package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/clock"
)

// Defaults of a Controller.
const (
	// DefaultSweepInterval is how often every namespace is re-evaluated,
	// to catch what no event announced.
	DefaultSweepInterval = 10 * time.Minute
	// DefaultWorkers is how many namespaces are evaluated at once.
	DefaultWorkers = 2
	// DefaultEvictRetry is how long an eviction that a
	// PodDisruptionBudget refused waits before it is tried again.
	DefaultEvictRetry = 30 * time.Second
	// maxRetries bounds the rate-limited retries of a failing namespace;
	// the next sweep tries it again.
	maxRetries = 5
)

// Event reasons.
const (
	// EventViolation is the reason of the Event on a workload whose pod
	// became violating.
	EventViolation = "StagegateViolation"
	// EventEvicted is the reason of the Event on a workload whose pod
	// was evicted because it violates an evicting stage.
	EventEvicted = "StagegateEvicted"
	// EventEvictionBlocked is the reason of the Event on a workload
	// whose pod could not be evicted, mostly because a
	// PodDisruptionBudget allows no disruption now.
	EventEvictionBlocked = "StagegateEvictionBlocked"
)

// Controller keeps an inventory of the running pods and what admission
// would decide for each now. Every replica runs it (Run), so that each can
// answer where a digest runs and what violates; only the replica that
// leads (Lead) writes the PolicyReports, gauges and Events, and evicts.
type Controller struct {
	client   kubernetes.Interface
	dyn      dynamic.Interface
	events   kubernetes.Interface
	reviewer Reviewer
	reports  reports
	metrics  *metrics
	log      *slog.Logger
	clock    clock.WithTicker
	interval time.Duration
	workers  int
	evict    map[string]bool
	retry    time.Duration

	factory    informers.SharedInformerFactory
	pods       cache.SharedIndexInformer
	namespaces corelisters.NamespaceLister
	nsInformer cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]

	// gitopsMu serializes watchGitOps; unserved is the GitOps kinds it
	// said it does not watch, so that it says so once. informers are the
	// GitOps informers' goroutines.
	gitopsMu  sync.Mutex
	unserved  map[string]bool
	informers sync.WaitGroup

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	// synced is closed when the caches first filled; done when Run
	// returned. answering is true from the end of the first evaluation
	// of every namespace until Run returns: answers come only from an
	// inventory that is whole and still watched.
	synced, done chan struct{}
	answering    atomic.Bool
	// term is the current term of leadership, nil while this replica
	// does not lead.
	term atomic.Pointer[term]

	mu sync.Mutex
	// gitops are the GitOps kinds watched, those the API server serves.
	gitops []*gitopsInformer
	// byDigest is the namespaces where each digest runs, so that a
	// revocation re-evaluates those alone; nsDigests is its inverse.
	byDigest  map[string]map[string]struct{}
	nsDigests map[string][]string
	// state is, per namespace, what its last evaluation found.
	state map[string]*nsState
	// violating is, per namespace, the pods (by UID) that violate and
	// since when, so that a report says since when.
	violating map[string]map[string]time.Time
	// unswept is the namespaces the first sweep has still to evaluate.
	unswept map[string]bool
}

// term is one term of leadership: what it wrote and announced.
type term struct {
	ctx context.Context
	// writing is held (read) by each write of the term, so that the term
	// ends only once none is under way: no gauge is set after Lead
	// dropped them.
	writing sync.RWMutex
	mu      sync.Mutex
	// announced is, per namespace, the pods (by UID) whose violation
	// this term sent an Event for, so that an Event marks becoming
	// violating, not every evaluation.
	announced map[string]map[string]bool
	// reported is the namespaces that have a report of stagegate's.
	reported map[string]bool
	// blocked is the namespaces with an eviction to try again.
	blocked map[string]bool
	// noReports is that PolicyReports cannot be written (mostly: the CRD
	// is not installed); the term leads all the same, and each sweep
	// checks again.
	noReports atomic.Bool
}

type controllerOptions struct {
	log      *slog.Logger
	reg      prometheus.Registerer
	clock    clock.WithTicker
	interval time.Duration
	workers  int
	evict    []string
	retry    time.Duration
	events   kubernetes.Interface
}

// Option configures a Controller.
type Option func(*controllerOptions)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *controllerOptions) { o.log = l } }

// WithRegisterer registers the controller's gauges on reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *controllerOptions) { o.reg = reg }
}

// WithClock sets the clock of the sweeps, the eviction retries and the
// reports' timestamps.
func WithClock(c clock.WithTicker) Option { return func(o *controllerOptions) { o.clock = c } }

// WithSweepInterval sets how often every namespace is re-evaluated
// (default DefaultSweepInterval).
func WithSweepInterval(d time.Duration) Option {
	return func(o *controllerOptions) { o.interval = d }
}

// WithWorkers sets how many namespaces are evaluated at once.
func WithWorkers(n int) Option { return func(o *controllerOptions) { o.workers = n } }

// WithEviction makes the leader evict, through the Eviction API, the
// running pods of stages that admission refuses them in because their
// digest is revoked or not promoted there; never a break-glass pod, nor
// one of an unknown stage. An eviction that a PodDisruptionBudget refuses
// is tried again after retry (default DefaultEvictRetry). Pass only
// enforced stages: a stage in warn or audit mode admits such pods.
func WithEviction(stages []string, retry time.Duration) Option {
	return func(o *controllerOptions) { o.evict, o.retry = stages, retry }
}

// WithEventClient sends the Events through client instead of the
// Controller's: give it a client with a rate limiter of its own, so that a
// revocation's thousand Events do not hold back the reports behind them.
func WithEventClient(client kubernetes.Interface) Option {
	return func(o *controllerOptions) { o.events = client }
}

// New returns a Controller that watches pods and namespaces through client,
// asks reviewer, and writes PolicyReports through dyn.
func New(client kubernetes.Interface, dyn dynamic.Interface, reviewer Reviewer, opts ...Option) (*Controller, error) {
	o := controllerOptions{clock: clock.RealClock{}, interval: DefaultSweepInterval, workers: DefaultWorkers, retry: DefaultEvictRetry}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.interval <= 0 {
		o.interval = DefaultSweepInterval
	}
	if o.workers <= 0 {
		o.workers = DefaultWorkers
	}
	if o.retry <= 0 {
		o.retry = DefaultEvictRetry
	}
	m, err := newMetrics(o.reg)
	if err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	if o.events == nil {
		o.events = client
	}
	c := &Controller{
		client: client, dyn: dyn, events: o.events, reviewer: reviewer, metrics: m, log: o.log,
		unserved: map[string]bool{},
		reports:  reports{client: dyn},
		clock:    o.clock, interval: o.interval, workers: o.workers,
		evict: map[string]bool{}, retry: o.retry,
		// The retries' backoff keeps real time, whatever clock the sweeps
		// keep: it paces calls to the API server.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "stagegate-inventory"}),
		synced:    make(chan struct{}),
		done:      make(chan struct{}),
		byDigest:  map[string]map[string]struct{}{},
		nsDigests: map[string][]string{},
		state:     map[string]*nsState{},
		violating: map[string]map[string]time.Time{},
	}
	for _, s := range o.evict {
		c.evict[s] = true
	}
	// No resync: the sweep re-evaluates everything, and a resync would
	// only replay the cache.
	c.factory = informers.NewSharedInformerFactory(client, 0)
	c.pods = c.factory.Core().V1().Pods().Informer()
	nsInf := c.factory.Core().V1().Namespaces()
	c.nsInformer, c.namespaces = nsInf.Informer(), nsInf.Lister()
	if err := c.pods.SetTransform(stripPod); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if err := c.nsInformer.SetTransform(stripNamespace); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if _, err := c.pods.AddEventHandler(handler(c.enqueue, changed)); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	if _, err := c.nsInformer.AddEventHandler(handler(c.enqueue, func(o, n *corev1.Namespace) bool {
		return o.Labels[stageKey] != n.Labels[stageKey]
	})); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	c.broadcaster = record.NewBroadcaster()
	c.recorder = c.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "stagegate"})
	return c, nil
}

// Run watches and evaluates until ctx ends, once: a Controller is not run
// again. It returns ErrNotSynced when the caches do not fill before ctx
// ends. It writes nothing to the cluster unless Lead runs too.
func (c *Controller) Run(ctx context.Context) error {
	defer close(c.done)
	defer c.answering.Store(false)
	defer c.queue.ShutDown()
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.events.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	// Waited for after ctx ended, which stops them.
	defer c.informers.Wait()
	synced := append([]cache.InformerSynced{c.pods.HasSynced, c.nsInformer.HasSynced}, c.watchGitOps(ctx)...)
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return ErrNotSynced
	}
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	close(c.synced)
	c.firstSweep()
	tick := c.clock.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.answering.Store(false)
			c.queue.ShutDown()
			wg.Wait()
			return nil
		case <-tick.C():
			// A kind whose CRD came since is watched from now; its
			// informer's first list enqueues the namespaces it fills.
			c.watchGitOps(ctx)
			c.sweep()
		}
	}
}

// Lead writes the reports, gauges and Events, and evicts, until ctx (the
// term of leadership) ends, and drops the gauges then: a replica that no
// longer leads leaves them to the one that does. It waits for Run's caches
// first, and returns ErrNotSynced if Run ends before they fill. Terms must
// not overlap. A cluster without the PolicyReport CRD is led all the same,
// without reports: the log and stagegate_running_policyreports_writable
// say so, and each sweep checks again.
func (c *Controller) Lead(ctx context.Context) error {
	select {
	case <-c.synced:
	case <-c.done:
		return ErrNotSynced
	case <-ctx.Done():
		return nil
	}
	t := &term{ctx: ctx, announced: map[string]map[string]bool{}, reported: map[string]bool{}, blocked: map[string]bool{}}
	// Without reports, the term still sets the gauges, sends the Events
	// and evicts: what an operator alerts on keeps working, and the gauge
	// and the log say what is missing.
	t.noReports.Store(true)
	c.checkReports(t)
	// Armed before the first evaluation, which may find an eviction to
	// retry.
	retry := c.clock.NewTicker(c.retry)
	defer retry.Stop()
	c.term.Store(t)
	defer func() {
		c.term.Store(nil)
		// ctx is done: the writes under way return at once.
		t.writing.Lock()
		defer t.writing.Unlock()
		c.metrics.reset()
	}()
	c.sweep()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-c.done:
			return nil
		case <-retry.C():
			t.mu.Lock()
			for ns := range t.blocked {
				c.queue.Add(ns)
			}
			t.mu.Unlock()
		}
	}
}

// Invalidate re-evaluates the pods that run any of digests: a revocation or
// a promotion of them was recorded. Pass an entry's platform digests too: a
// pod may name a platform image of a revoked index, or the index itself.
func (c *Controller) Invalidate(digests ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range digests {
		for ns := range c.byDigest[d] {
			c.queue.Add(ns)
		}
	}
}

// InvalidateAll re-evaluates every pod, e.g. after a policy reload.
func (c *Controller) InvalidateAll() {
	nss, err := c.namespaces.List(everything)
	if err != nil { // the lister of an informer's cache never fails
		c.log.Error("inventory: list namespaces", "err", err)
		return
	}
	for _, ns := range nss {
		c.queue.Add(ns.Name)
	}
}

// firstSweep evaluates every namespace, and answers once each was.
func (c *Controller) firstSweep() {
	nss, err := c.namespaces.List(everything)
	if err != nil { // the lister of an informer's cache never fails
		c.log.Error("inventory: list namespaces", "err", err)
	}
	c.mu.Lock()
	c.unswept = make(map[string]bool, len(nss))
	for _, ns := range nss {
		c.unswept[ns.Name] = true
	}
	c.mu.Unlock()
	c.swept("")
	c.sweep()
}

// swept records that the first sweep is done with ns.
func (c *Controller) swept(ns string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unswept == nil {
		return
	}
	delete(c.unswept, ns)
	if len(c.unswept) == 0 {
		c.unswept = nil
		c.answering.Store(true)
	}
}

// sweep re-evaluates everything; the leader's gauge says when.
func (c *Controller) sweep() {
	if t := c.term.Load(); t != nil {
		c.metrics.swept(c.clock.Now())
		c.checkReports(t)
	}
	c.InvalidateAll()
}

// checkReports finds, while t cannot write reports, whether it can now,
// and which namespaces hold a report of stagegate's: one that lost its
// stage label while no one led (or while the reports could not be
// written) still holds it, and its next evaluation removes it.
func (c *Controller) checkReports(t *term) {
	if !t.noReports.Load() {
		return
	}
	t.writing.RLock()
	defer t.writing.RUnlock()
	if t.ctx.Err() != nil {
		return
	}
	written, err := c.reports.written(t.ctx)
	if err != nil {
		c.metrics.reportsWritable(false)
		c.log.Error("inventory: PolicyReports cannot be written; violations are in the gauges, Events and answers only, until the next sweep finds the CRD "+
			"(install it: stagegate manifests generates it)", "resource", PolicyReportResource.String(), "err", err)
		return
	}
	t.mu.Lock()
	for _, ns := range written {
		t.reported[ns] = true
	}
	t.mu.Unlock()
	t.noReports.Store(false)
	c.metrics.reportsWritable(true)
}

// handler enqueues every added or deleted object, and an updated one when
// changed says the update may change its answer.
func handler[T any](enqueue func(any), changed func(old, cur T) bool) cache.ResourceEventHandlerFuncs {
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		DeleteFunc: enqueue,
		UpdateFunc: func(old, cur any) {
			o, ok1 := old.(T)
			n, ok2 := cur.(T)
			if !ok1 || !ok2 || changed(o, n) {
				enqueue(cur)
			}
		},
	}
}

// enqueue queues the namespace of a pod or GitOps object, or a namespace.
func (c *Controller) enqueue(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		c.queue.Add(o.Namespace)
	case *corev1.Namespace:
		c.queue.Add(o.Name)
	case *unstructured.Unstructured:
		if ns := o.GetNamespace(); ns != "" {
			c.queue.Add(ns)
		}
	}
}

func (c *Controller) next(ctx context.Context) bool {
	ns, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(ns)
	err := c.reconcile(ctx, ns)
	switch {
	case err == nil:
		c.queue.Forget(ns)
	case ctx.Err() != nil:
	case c.queue.NumRequeues(ns) < maxRetries:
		c.log.Warn("inventory: namespace evaluation failed; retrying", "namespace", ns, "err", err)
		c.queue.AddRateLimited(ns)
	default:
		c.log.Error("inventory: namespace evaluation failed; the next sweep retries", "namespace", ns, "err", err)
		c.queue.Forget(ns)
		// Answers must not wait for it forever; its pods are missing
		// from them until it evaluates.
		c.swept(ns)
	}
	return true
}
