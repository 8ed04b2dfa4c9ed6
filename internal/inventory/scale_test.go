package inventory

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/stagegate/stagegate/internal/ledger"
)

// ScaleEnv turns on TestScale; ScaleOutEnv names a file for its figures
// as JSON (what `make bench` reads).
const (
	ScaleEnv    = "STAGEGATE_SCALE"
	ScaleOutEnv = "STAGEGATE_SCALE_OUT"
)

// ScaleResult is TestScale's figures.
type ScaleResult struct {
	Pods       int `json:"pods"`
	Namespaces int `json:"namespaces"`
	// RevokedPods is how many pods run the digest that is revoked.
	RevokedPods int `json:"revokedPods"`
	// CreateSeconds is how long creating the pods took (setup, not a
	// figure of stagegate's).
	CreateSeconds float64 `json:"createSeconds"`
	// EvaluateSeconds is from Run's start until it answers: the informers'
	// list and the evaluation of every pod, on a follower.
	EvaluateSeconds float64 `json:"evaluateSeconds"`
	// SweepSeconds is from Lead's start until every namespace's report
	// is written: a leader's full sweep.
	SweepSeconds float64 `json:"sweepSeconds"`
	// RevocationSeconds is from Invalidate, as the promotion service's
	// observer calls it, until every affected namespace's report shows
	// every affected pod.
	RevocationSeconds float64 `json:"revocationSeconds"`
	// ExtraHeapBytes is the heap in use after Run and Lead and a GC,
	// less that before the Controller was made.
	ExtraHeapBytes int64 `json:"extraHeapBytes"`
}

// TestScale measures continuous validation at the scale: 10,000
// running pods in 100 namespaces, a revocation reaching 1,000 of them.
// It asserts nothing about time (the figures go to the log and to
// $STAGEGATE_SCALE_OUT, for `make bench`), only that the answers are right.
// It runs only with STAGEGATE_SCALE=1: creating the pods takes a minute.
func TestScale(t *testing.T) {
	if os.Getenv(ScaleEnv) != "1" {
		t.Skip("set " + ScaleEnv + "=1 to run the scale test (10,000 pods; make bench does)")
	}
	const (
		namespaces  = 100
		perNS       = 100
		revokedNS   = 10 // namespaces whose pods all run the revoked digest
		digestCount = 500
	)
	e := newEnv(t)
	res := ScaleResult{Pods: namespaces * perNS, Namespaces: namespaces, RevokedPods: revokedNS * perNS}
	digestOf := func(i int) string {
		h := sha256.Sum256(fmt.Appendf(nil, "stagegate-scale/%d", i))
		return "sha256:" + hex.EncodeToString(h[:])
	}
	revoked := digestOf(-1)
	e.appendEntry(t, ledger.KindPromotion, revoked, "test", "")
	for i := range digestCount {
		e.appendEntry(t, ledger.KindPromotion, digestOf(i), "test", "")
	}
	// Setup goes as fast as the API server takes it.
	fast := rest.CopyConfig(e.api.Config)
	fast.QPS, fast.Burst = 2000, 4000
	setup, err := kubernetes.NewForConfig(fast)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	for n := range namespaces {
		e.namespace(t, fmt.Sprintf("ns-%03d", n), "test")
	}
	type job struct{ ns, name, image string }
	jobs := make(chan job)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for j := range jobs {
				p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: j.ns, Name: j.name},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: j.image}}}}
				if _, err := setup.CoreV1().Pods(j.ns).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for n := range namespaces {
		for i := range perNS {
			d := revoked
			if n >= revokedNS {
				d = digestOf((n*perNS + i) % digestCount)
			}
			jobs <- job{ns: fmt.Sprintf("ns-%03d", n), name: fmt.Sprintf("pod-%03d", i), image: image(d)}
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatalf("create pods: %v", err)
	}
	res.CreateSeconds = time.Since(t0).Seconds()

	// The controller's clients are rate-limited as serve's are.
	cfg := rest.CopyConfig(e.api.Config)
	cfg.QPS, cfg.Burst = ClientQPS, ClientBurst
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	events, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	heap0 := heapInUse()
	if e.ctrl, err = New(cs, e.dyn, e.rev, WithClock(e.clock), WithSweepInterval(time.Hour), WithEventClient(events)); err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	e.run(t)
	e.waitAnswering(t)
	res.EvaluateSeconds = time.Since(t0).Seconds()

	t0 = time.Now()
	e.lead(t)
	e.waitReports(t, func(ns string, pass, fail int64) bool { return pass == perNS && fail == 0 })
	res.SweepSeconds = time.Since(t0).Seconds()
	res.ExtraHeapBytes = int64(heapInUse()) - int64(heap0)

	if _, total, err := e.ctrl.Running([]string{revoked}, "", 10); err != nil || total != res.RevokedPods {
		t.Fatalf("Running(revoked) = %d, %v; want %d", total, err, res.RevokedPods)
	}
	e.appendEntry(t, ledger.KindRevocation, revoked, ledger.AllStages, "CVE-2026-0015")
	t0 = time.Now()
	e.ctrl.Invalidate(revoked)
	e.waitReports(t, func(ns string, pass, fail int64) bool {
		if ns < fmt.Sprintf("ns-%03d", revokedNS) {
			return pass == 0 && fail == perNS
		}
		return pass == perNS && fail == 0
	})
	res.RevocationSeconds = time.Since(t0).Seconds()

	t.Logf("%d pods in %d namespaces (created in %.1fs): evaluated in %.2fs, reports written in %.2fs, "+
		"a revocation reaching %d pods reported in %.2fs, extra heap %.1f MB",
		res.Pods, res.Namespaces, res.CreateSeconds, res.EvaluateSeconds, res.SweepSeconds,
		res.RevokedPods, res.RevocationSeconds, float64(res.ExtraHeapBytes)/1e6)
	if out := os.Getenv(ScaleOutEnv); out != "" {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// waitReports polls the PolicyReports until there is one per test
// namespace and ok holds for each summary, for at most five minutes.
func (e *env) waitReports(t *testing.T, ok func(ns string, pass, fail int64) bool) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 5*time.Minute, true, func(ctx context.Context) (bool, error) {
		list, err := e.dyn.Resource(PolicyReportResource).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		good := 0
		for _, u := range list.Items {
			pass, _, _ := unstructured.NestedInt64(u.Object, "summary", "pass")
			fail, _, _ := unstructured.NestedInt64(u.Object, "summary", "fail")
			if ok(u.GetNamespace(), pass, fail) {
				good++
			}
		}
		last = fmt.Sprintf("%d of %d reports as wanted", good, len(list.Items))
		return good == 100 && len(list.Items) == 100, nil
	})
	if err != nil {
		t.Fatalf("reports: %v (%s)", err, last)
	}
}

// heapInUse is the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
