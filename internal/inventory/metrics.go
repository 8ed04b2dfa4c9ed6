package inventory

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the controller's gauges.
type metrics struct {
	violations *prometheus.GaugeVec
	lastSweep  prometheus.Gauge
	evictions  *prometheus.CounterVec
	// writable has one series, on the leader only: a follower writes no
	// reports, and says nothing about them.
	writable *prometheus.GaugeVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		violations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stagegate_running_violations",
			Help: "Running pods, and GitOps objects (Flux OCIRepository, Argo CD Application) that deploy an OCI artifact, that admission would refuse now (or that run by break-glass), by stage, namespace and reason.",
		}, []string{"stage", "namespace", "reason"}),
		lastSweep: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "stagegate_running_last_full_sweep_timestamp_seconds",
			Help: "When the last full sweep of the running pods started, as a Unix time.",
		}),
		evictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stagegate_running_evictions_total",
			Help: "Evictions of running pods that violate a stage with onViolation: evict, by stage and result (evicted, blocked: refused, e.g. by a PodDisruptionBudget, and retried; failed).",
		}, []string{"stage", "result"}),
		writable: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "stagegate_running_policyreports_writable",
			Help: "1 when the leader of continuous validation can write PolicyReports, 0 when it cannot (mostly: the wgpolicyk8s.io CRD is not installed); set by the leader only.",
		}, nil),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.violations, err = register(reg, m.violations); err != nil {
		return nil, err
	}
	if m.lastSweep, err = register(reg, m.lastSweep); err != nil {
		return nil, err
	}
	if m.evictions, err = register(reg, m.evictions); err != nil {
		return nil, err
	}
	if m.writable, err = register(reg, m.writable); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the collector already there: a
// replica builds a Controller for each term it leads, on the same
// registerer, and a later one takes over the gauges of the first.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	are := prometheus.AlreadyRegisteredError{}
	if errors.As(err, &are) {
		if old, ok := are.ExistingCollector.(T); ok {
			return old, nil
		}
	}
	return c, err
}

// reset drops every series: a controller that stopped (a replica that no
// longer leads) knows nothing of what runs now.
func (m *metrics) reset() {
	m.violations.Reset()
	m.writable.Reset()
}

func (m *metrics) reportsWritable(ok bool) {
	v := 0.0
	if ok {
		v = 1
	}
	m.writable.WithLabelValues().Set(v)
}

// set replaces ns's series with the counts of violations.
func (m *metrics) set(ns string, violations []Violation) {
	m.violations.DeletePartialMatch(prometheus.Labels{"namespace": ns})
	for _, v := range violations {
		stage := v.Stage
		if v.Reason == ReasonUnknownStage {
			// A namespace label is anyone's text: as admission's metrics
			// do, unknown stages share one label value.
			stage = "unknown"
		}
		m.violations.WithLabelValues(stage, ns, string(v.Reason)).Inc()
	}
}

func (m *metrics) swept(at time.Time) { m.lastSweep.Set(float64(at.UnixNano()) / 1e9) }
