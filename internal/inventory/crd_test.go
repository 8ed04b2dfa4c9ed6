package inventory

import (
	"context"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/ledger"
)

// TestMissingPolicyReportCRD (issue 15): a leader on a cluster without the
// PolicyReport CRD leads all the same (gauges, Events, answers), says so in
// a gauge an operator alerts on and in the log, and writes the reports
// from the first sweep after the CRD came.
func TestMissingPolicyReportCRD(t *testing.T) {
	e := newEnvWith(t, envConfig{noPolicyReportCRD: true})
	e.appendEntry(t, ledger.KindPromotion, digestA, "test", "")
	e.namespace(t, "test", "test")
	e.pod(t, "test", "good", image(digestA), nil)
	e.pod(t, "test", "bad", image(digestC), nil)
	e.start(t)

	writable := func() float64 { return e.gauge(t, "stagegate_running_policyreports_writable", nil) }
	t.Run("without the CRD, the leader still leads", func(t *testing.T) {
		e.waitViolations(t, ViolationQuery{Limit: 10}, "test/bad not promoted; next=")
		e.waitEvent(t, "test", "Pod", "bad")
		err := wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test", "reason": "not promoted"}) == 1, nil
		})
		if err != nil {
			t.Errorf("violations gauge of test = %v, want 1", e.gauge(t, "stagegate_running_violations", map[string]string{"namespace": "test"}))
		}
		if got := writable(); got != 0 {
			t.Errorf("stagegate_running_policyreports_writable = %v, want 0", got)
		}
		if !e.hasSeries(t, "stagegate_running_policyreports_writable") {
			t.Error("no stagegate_running_policyreports_writable series: an alert on it would not fire")
		}
	})

	installPolicyReportCRD(t, e.api)
	t.Run("the next sweep writes the reports", func(t *testing.T) {
		err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return e.clock.Waiters() >= 2, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		e.clock.Step(time.Hour)
		e.waitReport(t, "test", report{pass: 1, fail: 1, results: []result{{pod: "bad", reason: "not promoted", digest: digestC}}})
		if got := writable(); got != 1 {
			t.Errorf("stagegate_running_policyreports_writable = %v, want 1", got)
		}
	})

	t.Run("a CRD removed during the term", func(t *testing.T) {
		if err := envtest.UninstallCRDs(e.api.Config, envtest.CRDInstallOptions{Paths: []string{"../manifests/policyreport-crd.yaml"}}); err != nil {
			t.Fatal(err)
		}
		// Wait until it is no longer served, then give the leader a write.
		err := wait.PollUntilContextTimeout(t.Context(), 50*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			_, err := e.dyn.Resource(PolicyReportResource).List(ctx, metav1.ListOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		e.pod(t, "test", "bad-3", image(digestC), nil)
		err = wait.PollUntilContextTimeout(t.Context(), 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return writable() == 0, nil
		})
		if err != nil {
			t.Errorf("stagegate_running_policyreports_writable = %v after the CRD went, want 0", writable())
		}
		e.waitViolations(t, ViolationQuery{Namespace: "test", Limit: 10}, "test/bad not promoted; test/bad-3 not promoted; next=")
	})
}

// hasSeries is whether the registry serves a series of name.
func (e *env) hasSeries(t *testing.T, name string) bool {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return true
		}
	}
	return false
}
