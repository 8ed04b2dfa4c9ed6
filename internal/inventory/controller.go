package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	// maxRetries bounds the rate-limited retries of a failing namespace;
	// the next sweep tries it again.
	maxRetries = 5
)

// Event reasons.
const (
	// EventViolation is the reason of the Event on a workload whose pod
	// became violating.
	EventViolation = "StagegateViolation"
)

// Controller keeps each gated namespace's PolicyReport, gauges and Events up
// to date with what admission would decide now for its running pods. Run
// it in one replica only (the leader).
type Controller struct {
	client   kubernetes.Interface
	reviewer Reviewer
	reports  reports
	metrics  *metrics
	log      *slog.Logger
	clock    clock.WithTicker
	interval time.Duration
	workers  int

	factory    informers.SharedInformerFactory
	pods       cache.SharedIndexInformer
	namespaces corelisters.NamespaceLister
	nsInformer cache.SharedIndexInformer
	queue      workqueue.TypedRateLimitingInterface[string]

	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder

	mu sync.Mutex
	// byDigest is the namespaces where each digest runs, so that a
	// revocation re-evaluates those alone; nsDigests is its inverse.
	byDigest  map[string]map[string]struct{}
	nsDigests map[string][]string
	// violating is, per namespace, the pods (by UID) that violate and
	// since when, so that an Event marks becoming violating, not every
	// evaluation, and a report says since when.
	violating map[string]map[string]time.Time
	// reported is the namespaces that have a report of stagegate's.
	reported map[string]bool
}

type controllerOptions struct {
	log      *slog.Logger
	reg      prometheus.Registerer
	clock    clock.WithTicker
	interval time.Duration
	workers  int
}

// Option configures a Controller.
type Option func(*controllerOptions)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *controllerOptions) { o.log = l } }

// WithRegisterer registers the controller's gauges on reg.
func WithRegisterer(reg prometheus.Registerer) Option {
	return func(o *controllerOptions) { o.reg = reg }
}

// WithClock sets the clock of the sweeps and the reports' timestamps.
func WithClock(c clock.WithTicker) Option { return func(o *controllerOptions) { o.clock = c } }

// WithSweepInterval sets how often every namespace is re-evaluated
// (default DefaultSweepInterval).
func WithSweepInterval(d time.Duration) Option {
	return func(o *controllerOptions) { o.interval = d }
}

// WithWorkers sets how many namespaces are evaluated at once.
func WithWorkers(n int) Option { return func(o *controllerOptions) { o.workers = n } }

// New returns a Controller that watches pods and namespaces through client,
// asks reviewer, and writes PolicyReports through dyn.
func New(client kubernetes.Interface, dyn dynamic.Interface, reviewer Reviewer, opts ...Option) (*Controller, error) {
	o := controllerOptions{clock: clock.RealClock{}, interval: DefaultSweepInterval, workers: DefaultWorkers}
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
	m, err := newMetrics(o.reg)
	if err != nil {
		return nil, fmt.Errorf("inventory: metrics: %w", err)
	}
	c := &Controller{
		client: client, reviewer: reviewer, metrics: m, log: o.log,
		reports: reports{client: dyn},
		clock:   o.clock, interval: o.interval, workers: o.workers,
		// The retries' backoff keeps real time, whatever clock the sweeps
		// keep: it paces calls to the API server.
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "stagegate-inventory"}),
		byDigest:  map[string]map[string]struct{}{},
		nsDigests: map[string][]string{},
		violating: map[string]map[string]time.Time{},
		reported:  map[string]bool{},
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
// ends. The gauges are dropped when it returns.
func (c *Controller) Run(ctx context.Context) error {
	defer c.metrics.reset()
	defer c.queue.ShutDown()
	c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.client.CoreV1().Events("")})
	defer c.broadcaster.Shutdown()
	c.factory.Start(ctx.Done())
	defer c.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), c.pods.HasSynced, c.nsInformer.HasSynced) {
		return ErrNotSynced
	}
	// A namespace that lost its stage label while no controller ran
	// still holds a report; the first sweep removes it.
	written, err := c.reports.written(ctx)
	if err != nil {
		return err
	}
	for _, ns := range written {
		c.setReported(ns, true)
	}
	var wg sync.WaitGroup
	for range c.workers {
		wg.Go(func() {
			for c.next(ctx) {
			}
		})
	}
	c.sweep()
	tick := c.clock.NewTicker(c.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			c.queue.ShutDown()
			wg.Wait()
			return nil
		case <-tick.C():
			c.sweep()
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

func (c *Controller) sweep() {
	c.metrics.swept(c.clock.Now())
	c.InvalidateAll()
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

// enqueue queues the namespace of a pod, or a namespace.
func (c *Controller) enqueue(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		c.queue.Add(o.Namespace)
	case *corev1.Namespace:
		c.queue.Add(o.Name)
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
	}
	return true
}

// reconcile recomputes ns's violations from the caches and the ledger, and
// writes its report, gauges and Events. It is idempotent.
func (c *Controller) reconcile(ctx context.Context, ns string) error {
	nsObj, err := c.namespaces.Get(ns)
	if apierrors.IsNotFound(err) {
		// Its report went with it.
		c.forget(ns)
		return nil
	}
	if err != nil {
		return fmt.Errorf("inventory: namespace %q: %w", ns, err)
	}
	objs, err := c.pods.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return fmt.Errorf("inventory: pods of namespace %q: %w", ns, err)
	}
	var (
		violations []Violation
		digests    []string
		passed     int
		staged     = nsObj.Labels[stageKey] != ""
	)
	for _, obj := range objs {
		p, ok := obj.(*corev1.Pod)
		if !ok || !gated(p) {
			continue
		}
		st := stage(p, nsObj)
		if st == "" {
			continue
		}
		staged = true
		v, ds, err := evaluate(ctx, c.reviewer, p, st)
		if err != nil {
			return err
		}
		digests = append(digests, ds...)
		if v == nil {
			passed++
			continue
		}
		violations = append(violations, *v)
	}
	slices.SortFunc(violations, func(a, b Violation) int { return strings.Compare(a.Pod, b.Pod) })
	c.index(ns, digests)
	c.metrics.set(ns, violations)
	c.announce(ctx, ns, violations)
	if !staged {
		if !c.hasReport(ns) {
			return nil
		}
		if err := c.reports.remove(ctx, ns); err != nil {
			return err
		}
		c.setReported(ns, false)
		return nil
	}
	if err := c.reports.write(ctx, ns, violations, passed); err != nil {
		return err
	}
	c.setReported(ns, true)
	return nil
}

// index records the digests that run in ns.
func (c *Controller) index(ns string, digests []string) {
	slices.Sort(digests)
	digests = slices.Compact(digests)
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range c.nsDigests[ns] {
		delete(c.byDigest[d], ns)
		if len(c.byDigest[d]) == 0 {
			delete(c.byDigest, d)
		}
	}
	if len(digests) == 0 {
		delete(c.nsDigests, ns)
		return
	}
	c.nsDigests[ns] = digests
	for _, d := range digests {
		if c.byDigest[d] == nil {
			c.byDigest[d] = map[string]struct{}{}
		}
		c.byDigest[d][ns] = struct{}{}
	}
}

// announce emits an Event for each pod of ns that became violating, sets
// each violation's Since, and remembers which pods violate since when.
func (c *Controller) announce(ctx context.Context, ns string, violations []Violation) {
	now := make(map[string]time.Time, len(violations))
	at := c.clock.Now()
	c.mu.Lock()
	before := c.violating[ns]
	var fresh []Violation
	for i, v := range violations {
		since, ok := before[v.UID]
		if !ok {
			since = at
			fresh = append(fresh, v)
		}
		violations[i].Since = since
		now[v.UID] = since
	}
	if len(now) == 0 {
		delete(c.violating, ns)
	} else {
		c.violating[ns] = now
	}
	c.mu.Unlock()
	for _, v := range fresh {
		ref := c.workload(ctx, v.Owner)
		msg := fmt.Sprintf("pod %s runs %s, which stage %q would not admit now (%s): %s", v.Pod, v.Image, v.Stage, v.Reason, v.Message)
		c.recorder.Event(&ref, corev1.EventTypeWarning, EventViolation, truncate(msg, maxEventMessage))
		args := []any{"namespace", ns, "pod", v.Pod, "stage", v.Stage, "image", v.Image, "digest", v.Digest, "reason", v.Reason}
		if v.HasLedgerIndex {
			args = append(args, "ledgerIndex", v.LedgerIndex)
		}
		c.log.Warn("inventory: running pod violates its stage", args...)
	}
}

// maxEventMessage keeps an Event's message within what the events API
// accepts (a policy may deny with many long reasons).
const maxEventMessage = 1024

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-len("…")], "") + "…"
}

// workload is the object people manage for a pod's owner: a ReplicaSet's
// Deployment, whose Events "kubectl describe deployment" shows, else the
// owner itself. It costs a GET, made only when a pod becomes violating.
func (c *Controller) workload(ctx context.Context, ref corev1.ObjectReference) corev1.ObjectReference {
	if ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" {
		return ref
	}
	rs, err := c.client.AppsV1().ReplicaSets(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err != nil {
		c.log.Debug("inventory: owner of a ReplicaSet unknown; the Event goes on the ReplicaSet", "namespace", ref.Namespace, "replicaSet", ref.Name, "err", err)
		return ref
	}
	if o := metav1.GetControllerOf(rs); o != nil && o.Kind == "Deployment" && o.APIVersion == "apps/v1" {
		return corev1.ObjectReference{APIVersion: o.APIVersion, Kind: o.Kind, Namespace: ref.Namespace, Name: o.Name, UID: o.UID}
	}
	return ref
}

func (c *Controller) forget(ns string) {
	c.index(ns, nil)
	c.metrics.set(ns, nil)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.violating, ns)
	delete(c.reported, ns)
}

func (c *Controller) hasReport(ns string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reported[ns]
}

func (c *Controller) setReported(ns string, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if ok {
		c.reported[ns] = true
	} else {
		delete(c.reported, ns)
	}
}
