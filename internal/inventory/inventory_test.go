package inventory

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	testingclock "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/policies"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

const repo = "registry.example/app"

var (
	digestA = "sha256:" + strings.Repeat("a", 64) // promoted to test and prod, then revoked
	digestB = "sha256:" + strings.Repeat("b", 64) // promoted to test only
	digestC = "sha256:" + strings.Repeat("c", 64) // never promoted
)

func image(d string) string { return repo + "@" + d }

// env is a real API server with the PolicyReport CRD, a real ledger, and
// admission's Reviewer over the built-in policies, as the app builds it.
type env struct {
	api    *framework.APIServer
	rev    Reviewer
	cs     kubernetes.Interface
	dyn    dynamic.Interface
	ledger *ledger.Ledger
	reg    *prometheus.Registry
	clock  *testingclock.FakeClock
	ctrl   *Controller
	at     time.Time
}

func newEnv(t *testing.T, opts ...Option) *env {
	t.Helper()
	return newEnvWith(t, envConfig{}, opts...)
}

// envConfig is what an env may differ in.
type envConfig struct {
	// reviewer are options of the Reviewer's.
	reviewer []admission.Option
	// noPolicyReportCRD leaves the PolicyReport CRD out (installCRD
	// installs it).
	noPolicyReportCRD bool
}

// newEnvWith is newEnv as ec says.
func newEnvWith(t *testing.T, ec envConfig, opts ...Option) *env {
	t.Helper()
	api := framework.StartAPIServer(t)
	if !ec.noPolicyReportCRD {
		installPolicyReportCRD(t, api)
	}
	dyn, err := dynamic.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := ledgertest.New(t)
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(t.Context(), policies.FS, cfg.PolicyData(), policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	modes := map[string]admission.Mode{}
	for _, s := range cfg.Stages {
		modes[s.Name] = admission.Mode(s.Mode)
	}
	// No recorder: a dry run records nothing, and were a break-glass
	// recorded, the Reviewer would refuse it for want of one.
	rev := admission.NewReviewer(l, pol, append([]admission.Option{admission.WithStages(cfg.StageNames()), admission.WithModes(modes)}, ec.reviewer...)...)
	e := &env{api: api, rev: rev, cs: api.Clientset, dyn: dyn, ledger: l, reg: prometheus.NewRegistry(),
		clock: testingclock.NewFakeClock(time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)),
		at:    time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	e.ctrl, err = New(api.Clientset, dyn, rev, append([]Option{WithRegisterer(e.reg), WithClock(e.clock), WithSweepInterval(time.Hour),
		WithLogger(slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func installPolicyReportCRD(t *testing.T, api *framework.APIServer) {
	t.Helper()
	if _, err := envtest.InstallCRDs(api.Config, envtest.CRDInstallOptions{
		Paths: []string{"../manifests/policyreport-crd.yaml"}, ErrorIfPathMissing: true,
	}); err != nil {
		t.Fatalf("install the PolicyReport CRD: %v", err)
	}
}

// start runs the controller and leads it, as the holder of the Lease.
func (e *env) start(t *testing.T) {
	e.run(t)
	e.lead(t)
}

// run runs the controller, as every replica does, until the test ends or
// the returned function stops it.
func (e *env) run(t *testing.T) (stop func()) {
	t.Helper()
	return e.goRun(t, "Run", e.ctrl.Run)
}

// lead leads the controller until the test ends, or until the returned
// function ends the term.
func (e *env) lead(t *testing.T) (stop func()) {
	t.Helper()
	return e.goRun(t, "Lead", e.ctrl.Lead)
}

func (e *env) goRun(t *testing.T, what string, fn func(context.Context) error) func() {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("%s: %v", what, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// appendEntry records a promotion or revocation as the promotion service
// would, signed envelope aside (admission reads states, not envelopes).
func (e *env) appendEntry(t *testing.T, kind ledger.Kind, digest, stage, reason string) uint64 {
	t.Helper()
	e.at = e.at.Add(time.Minute)
	r, err := e.ledger.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		return &ledger.Entry{Index: index, Kind: kind, Repository: repo, Digest: digest, Stage: stage,
			Subject: "security-team", Reason: reason, Time: e.at, Envelope: []byte(`{}`)}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return r.Entry.Index
}

func (e *env) namespace(t *testing.T, name, stage string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{admission.StageLabel: stage}}}
	if _, err := e.cs.CoreV1().Namespaces().Create(t.Context(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func (e *env) relabel(t *testing.T, name, stage string) {
	t.Helper()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, admission.StageLabel, stage)
	if _, err := e.cs.CoreV1().Namespaces().Patch(t.Context(), name, "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// pod creates a running pod: envtest has no kubelet, so the phase is set
// through the status subresource, as a kubelet would.
func (e *env) pod(t *testing.T, ns, name, img string, mutate func(*corev1.Pod)) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}},
	}
	if mutate != nil {
		mutate(p)
	}
	p, err := e.cs.CoreV1().Pods(ns).Create(t.Context(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := e.cs.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// deployment creates a Deployment and the ReplicaSet it would own: envtest
// runs no controllers.
func (e *env) deployment(t *testing.T, ns, name, img string) *appsv1.ReplicaSet {
	t.Helper()
	yes := true
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: sel.MatchLabels},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: img}}}}
	d, err := e.cs.AppsV1().Deployments(ns).Create(t.Context(), &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := e.cs.AppsV1().ReplicaSets(ns).Create(t.Context(), &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: name + "-5d8f",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "Deployment", Name: d.Name, UID: d.UID, Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: tmpl}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// result is a report result as a test compares it; kind is empty for a
// pod.
type result struct {
	pod, reason, digest, ledgerIndex string
	kind                             string
}

type report struct {
	pass, fail int64
	results    []result
}

func (e *env) report(ctx context.Context, ns string) (report, bool, error) {
	u, err := e.dyn.Resource(PolicyReportResource).Namespace(ns).Get(ctx, ReportName, metav1.GetOptions{})
	if err != nil {
		return report{}, false, nil //nolint:nilerr // not there yet: poll again
	}
	var r report
	r.pass, _, _ = unstructured.NestedInt64(u.Object, "summary", "pass")
	r.fail, _, _ = unstructured.NestedInt64(u.Object, "summary", "fail")
	items, _, _ := unstructured.NestedSlice(u.Object, "results")
	for _, it := range items {
		m := it.(map[string]any)
		res, _, _ := unstructured.NestedString(m, "result")
		if res != "fail" {
			return r, false, fmt.Errorf("result %q, want fail", res)
		}
		rs, _, _ := unstructured.NestedSlice(m, "resources")
		if len(rs) != 1 {
			return r, false, fmt.Errorf("%d resources in a result, want 1", len(rs))
		}
		pod, _, _ := unstructured.NestedString(rs[0].(map[string]any), "name")
		kind, _, _ := unstructured.NestedString(rs[0].(map[string]any), "kind")
		if kind == "Pod" {
			kind = ""
		}
		props, _, _ := unstructured.NestedStringMap(m, "properties")
		r.results = append(r.results, result{pod: pod, kind: kind, reason: props["reason"], digest: props["digest"], ledgerIndex: props["ledgerIndex"]})
	}
	return r, true, nil
}

// waitReport polls ns's report until it is want, for at most a minute.
func (e *env) waitReport(t *testing.T, ns string, want report) {
	t.Helper()
	var last report
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		r, ok, err := e.report(ctx, ns)
		if err != nil || !ok {
			return false, err
		}
		last = r
		return fmt.Sprint(r) == fmt.Sprint(want), nil
	})
	if err != nil {
		t.Fatalf("report of %s: %v\n got %+v\nwant %+v", ns, err, last, want)
	}
}

// since is the timestamp of each result of ns's report, by pod.
func (e *env) since(t *testing.T, ns string) map[string]int64 {
	t.Helper()
	u, err := e.dyn.Resource(PolicyReportResource).Namespace(ns).Get(t.Context(), ReportName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	items, _, _ := unstructured.NestedSlice(u.Object, "results")
	out := map[string]int64{}
	for _, it := range items {
		m := it.(map[string]any)
		rs, _, _ := unstructured.NestedSlice(m, "resources")
		pod, _, _ := unstructured.NestedString(rs[0].(map[string]any), "name")
		out[pod], _, _ = unstructured.NestedInt64(m, "timestamp", "seconds")
	}
	return out
}

// waitNoReport polls until ns has no report, for at most a minute.
func (e *env) waitNoReport(t *testing.T, ns string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := e.dyn.Resource(PolicyReportResource).Namespace(ns).Get(ctx, ReportName, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		t.Fatalf("the report of ungated namespace %s stays: %v", ns, err)
	}
}

// gauge is the sum of a gauge's or counter's series that match labels,
// from the registry as /metrics would serve it.
func (e *env) gauge(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metric
				}
			}
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// waitEvent polls for a violation Event on the object named name in ns.
func (e *env) waitEvent(t *testing.T, ns, kind, name string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		evs, err := e.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
		if err != nil {
			return false, err
		}
		for _, ev := range evs.Items {
			if ev.Reason == EventViolation && ev.InvolvedObject.Kind == kind {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no %s Event on %s %s/%s: %v", EventViolation, kind, ns, name, err)
	}
}

func (e *env) events(t *testing.T, ns, name string) int {
	t.Helper()
	evs, err := e.cs.CoreV1().Events(ns).List(t.Context(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, ev := range evs.Items {
		if ev.Reason == EventViolation {
			n += int(ev.Count)
		}
	}
	return n
}

func TestContinuousValidation(t *testing.T) {
	e := newEnv(t)
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestA, "prod", "")
	e.appendEntry(t, ledger.KindPromotion, digestB, "test", "")
	e.namespace(t, "test", "test")
	e.namespace(t, "prod", "prod")
	e.namespace(t, "plain", "") // no stage: not gated, no report
	yes := true
	e.pod(t, "test", "app-a", image(digestA), nil)
	e.pod(t, "test", "app-b", image(digestB), nil)
	e.pod(t, "test", "glass", image(digestC), func(p *corev1.Pod) {
		p.Annotations = map[string]string{admission.BreakGlassAnnotation: "INC-1234: hotfix"}
	})
	rs := e.deployment(t, "prod", "app-a", image(digestA))
	e.pod(t, "prod", "app-a-5d8f-x2k9", image(digestA), func(p *corev1.Pod) {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}
	})
	e.pod(t, "plain", "anything", image(digestC), nil)
	// A report an earlier run left in a namespace that lost its stage.
	stale := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": "PolicyReport",
		"metadata": map[string]any{"name": ReportName, "namespace": "plain", "labels": map[string]any{managedBy: fieldManager}},
	}}
	if _, err := e.dyn.Resource(PolicyReportResource).Namespace("plain").Create(t.Context(), stale, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	size, err := e.ledger.Size()
	if err != nil {
		t.Fatal(err)
	}
	e.start(t)

	t.Run("at start, only the break-glass pod is reported", func(t *testing.T) {
		e.waitReport(t, "test", report{pass: 2, fail: 1, results: []result{{pod: "glass", reason: "break-glass", digest: digestC}}})
		e.waitReport(t, "prod", report{pass: 1})
		e.waitEvent(t, "test", "Pod", "glass")
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test", "stage": "test", "reason": "break-glass"}); got != 1 {
			t.Errorf("break-glass gauge of test = %v, want 1", got)
		}
		e.waitNoReport(t, "plain")
		// A dry run records nothing, not even the break-glass.
		if got, err := e.ledger.Size(); err != nil || got != size {
			t.Errorf("ledger size %d (%v), want %d: evaluation wrote to the ledger", got, err, size)
		}
	})

	revocation := e.appendEntry(t, ledger.KindRevocation, digestA, ledger.AllStages, "CVE-2026-0001")
	// As the ledger side would call it for an index and its platforms;
	// only the second runs here.
	e.ctrl.Invalidate("sha256:"+strings.Repeat("f", 64), digestA)
	idx := fmt.Sprint(revocation)

	t.Run("a revocation reaches the running pods", func(t *testing.T) {
		e.waitReport(t, "test", report{pass: 1, fail: 2, results: []result{
			{pod: "app-a", reason: "revoked", digest: digestA, ledgerIndex: idx},
			{pod: "glass", reason: "break-glass", digest: digestC},
		}})
		e.waitReport(t, "prod", report{fail: 1, results: []result{{pod: "app-a-5d8f-x2k9", reason: "revoked", digest: digestA, ledgerIndex: idx}}})
		e.waitEvent(t, "prod", "Deployment", "app-a")
		e.waitEvent(t, "test", "Pod", "app-a")
		for _, ns := range []string{"test", "prod"} {
			if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": ns, "stage": ns, "reason": "revoked"}); got != 1 {
				t.Errorf("revoked gauge of %s = %v, want 1", ns, got)
			}
		}
	})

	// Only Invalidate could have told it: the fake clock never ticks the
	// sweep before this point.
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.appendEntry(t, ledger.KindPromotion, digestA, "prod", "")
	e.ctrl.Invalidate(digestA)

	t.Run("promoting again clears them", func(t *testing.T) {
		e.waitReport(t, "test", report{pass: 2, fail: 1, results: []result{{pod: "glass", reason: "break-glass", digest: digestC}}})
		e.waitReport(t, "prod", report{pass: 1})
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"reason": "revoked"}); got != 0 {
			t.Errorf("revoked gauge = %v, want 0", got)
		}
		// The glass pod violated throughout: one Event, not one per
		// evaluation.
		if got := e.events(t, "test", "glass"); got != 1 {
			t.Errorf("%d Events on the break-glass pod, want 1", got)
		}
	})

	e.relabel(t, "test", "prod")

	t.Run("a namespace relabelled to another stage", func(t *testing.T) {
		// B is promoted to test only, and prod allows no break-glass.
		e.waitReport(t, "test", report{pass: 1, fail: 2, results: []result{
			{pod: "app-b", reason: "not promoted", digest: digestB},
			{pod: "glass", reason: "not promoted", digest: digestC},
		}})
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test", "stage": "prod", "reason": "not promoted"}); got != 2 {
			t.Errorf("not-promoted gauge of test = %v, want 2", got)
		}
	})

	e.relabel(t, "test", "qa")

	t.Run("an unknown stage", func(t *testing.T) {
		e.waitReport(t, "test", report{fail: 3, results: []result{
			{pod: "app-a", reason: "unknown stage"}, {pod: "app-b", reason: "unknown stage"}, {pod: "glass", reason: "unknown stage"},
		}})
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test", "stage": "unknown", "reason": "unknown stage"}); got != 3 {
			t.Errorf("unknown-stage gauge of test = %v, want 3", got)
		}
	})

	var revokedB uint64
	t.Run("the periodic sweep", func(t *testing.T) {
		before := e.gauge(t, "stagegate_running_last_full_sweep_timestamp_seconds", nil)
		if want := float64(e.clock.Now().Unix()); before != want {
			t.Fatalf("last sweep %v, want the start %v", before, want)
		}
		// A change no event announces: the ledger's state of B in prod.
		e.appendEntry(t, ledger.KindPromotion, digestB, "prod", "")
		e.relabel(t, "test", "prod")
		e.waitReport(t, "test", report{pass: 2, fail: 1, results: []result{{pod: "glass", reason: "not promoted", digest: digestC}}})
		revokedB = e.appendEntry(t, ledger.KindRevocation, digestB, "prod", "bad build")
		// Wait until the sweep's ticker is armed, then tick it.
		err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			// Run's sweep ticker and Lead's eviction retry.
			return e.clock.Waiters() >= 2, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Step(time.Hour)
		e.waitReport(t, "test", report{pass: 1, fail: 2, results: []result{
			{pod: "app-b", reason: "revoked", digest: digestB, ledgerIndex: fmt.Sprint(revokedB)},
			{pod: "glass", reason: "not promoted", digest: digestC},
		}})
		if got, want := e.gauge(t, "stagegate_running_last_full_sweep_timestamp_seconds", nil), float64(e.clock.Now().Unix()); got != want {
			t.Errorf("last sweep %v, want %v", got, want)
		}
		// A result is stamped with when its pod began to violate: the
		// glass pod has since the start, app-b since this sweep.
		start := e.clock.Now().Add(-time.Hour).Unix()
		if got := e.since(t, "test"); got["glass"] != start || got["app-b"] != start+3600 {
			t.Errorf("result timestamps %v, want glass %d, app-b %d", got, start, start+3600)
		}
	})

	t.Run("a deleted pod and an ungated namespace leave the reports", func(t *testing.T) {
		if err := e.cs.CoreV1().Pods("test").Delete(t.Context(), "glass", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitReport(t, "test", report{pass: 1, fail: 1, results: []result{
			{pod: "app-b", reason: "revoked", digest: digestB, ledgerIndex: fmt.Sprint(revokedB)},
		}})
		patch := fmt.Sprintf(`{"metadata":{"labels":{%q:null}}}`, admission.StageLabel)
		if _, err := e.cs.CoreV1().Namespaces().Patch(t.Context(), "test", "application/merge-patch+json", []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		e.waitNoReport(t, "test")
		if got := e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test"}); got != 0 {
			t.Errorf("violations gauge of ungated test = %v, want 0", got)
		}
	})
}
