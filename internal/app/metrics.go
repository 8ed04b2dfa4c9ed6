package app

import (
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	decisions *prometheus.CounterVec
	requests  *prometheus.CounterVec
	duration  *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stagegate_admission_decisions_total",
			Help: "Admission decisions by stage and result.",
		}, []string{"stage", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "stagegate_http_requests_total",
			Help: "HTTP requests by handler and status code.",
		}, []string{"handler", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "stagegate_http_request_duration_seconds",
			Help:    "HTTP request latency by handler.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"handler"}),
	}
	if reg != nil {
		reg.MustRegister(m.decisions, m.requests, m.duration)
	}
	return m
}

func (m *metrics) Decision(stage, result string) { m.decisions.WithLabelValues(stage, result).Inc() }

// instrument labels requests by route family, never by raw path, so that
// label cardinality stays bounded whatever clients send.
func (m *metrics) instrument(next http.Handler) http.Handler {
	families := []string{"/admission/validate/", "/admission/unknown-stage", "/admission/mutate/", "/v1/promotions", "/v1/promotion-sets", "/v1/revocations", "/v1/images/", "/v1/ledger/", "/healthz", "/readyz", "/metrics"}
	handlers := map[string]http.Handler{}
	for _, f := range families {
		name := strings.Trim(f, "/")
		handlers[f] = promhttp.InstrumentHandlerDuration(m.duration.MustCurryWith(prometheus.Labels{"handler": name}),
			promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": name}), next))
	}
	other := promhttp.InstrumentHandlerCounter(m.requests.MustCurryWith(prometheus.Labels{"handler": "other"}), next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, f := range families {
			if strings.HasPrefix(r.URL.Path, f) {
				handlers[f].ServeHTTP(w, r)
				return
			}
		}
		other.ServeHTTP(w, r)
	})
}
