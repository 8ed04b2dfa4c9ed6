package config

import (
	"fmt"
	"os"
	"strings"
	"time"
)

// ContinuousValidation re-checks the pods that already run, through the
// Kubernetes API, whenever a revocation, a promotion, a namespace's stage
// label or a new pod may change admission's answer, and reports what it
// would refuse now as PolicyReports, Events and gauges.
type ContinuousValidation struct {
	// Enabled is off by default, so that serve runs with no cluster.
	Enabled bool `json:"enabled"`
	// Kubeconfig is the kubeconfig file of the cluster; empty uses the
	// pod's service account (in-cluster).
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// Sweep is how often every running pod is checked again, to catch what
	// no event announced. Default 10m.
	Sweep Duration `json:"sweep,omitempty"`
	// Lease elects the one replica that writes the reports.
	Lease Lease `json:"lease,omitzero"`
	// EvictRetry is how long an eviction that a PodDisruptionBudget
	// refused (a stage with onViolation: evict) waits before it is tried
	// again. Default 30s.
	EvictRetry Duration `json:"evictRetry,omitempty"`
}

// Lease is the Kubernetes Lease whose holder runs continuous validation.
type Lease struct {
	// Name of the Lease object. Default stagegate-inventory.
	Name string `json:"name,omitempty"`
	// Namespace of the Lease. Default: the pod's own namespace (from its
	// service account), or "stagegate" outside a pod.
	Namespace string `json:"namespace,omitempty"`
	// Duration is how long a lease is valid without renewal: how long the
	// replicas wait for a holder that died. Default 15s.
	Duration Duration `json:"duration,omitempty"`
	// Renew is how long the holder keeps trying to renew before it gives
	// up leading. Default 10s; below Duration.
	Renew Duration `json:"renew,omitempty"`
	// Retry is how often the replicas try to acquire or renew. Default 2s;
	// below Renew.
	Retry Duration `json:"retry,omitempty"`
}

// Defaults of ContinuousValidation.
const (
	DefaultSweep          = 10 * time.Minute
	DefaultLeaseName      = "stagegate-inventory"
	DefaultLeaseNamespace = "stagegate"
	DefaultLeaseDuration  = 15 * time.Second
	DefaultLeaseRenew     = 10 * time.Second
	DefaultLeaseRetry     = 2 * time.Second
	DefaultEvictRetry     = 30 * time.Second
	// serviceAccountNamespace is where the kubelet writes a pod's
	// namespace.
	serviceAccountNamespace = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
)

// validate fills in the defaults and checks the bounds. It checks even
// when disabled, so that a typo is found before the section is turned on.
func (cv *ContinuousValidation) validate() []error {
	var errs []error
	if cv.Sweep == 0 {
		cv.Sweep = Duration(DefaultSweep)
	}
	if cv.Sweep.Std() < time.Second {
		errs = append(errs, fmt.Errorf("continuousValidation.sweep %s must be at least 1s", cv.Sweep.Std()))
	}
	if cv.EvictRetry == 0 {
		cv.EvictRetry = Duration(DefaultEvictRetry)
	}
	if cv.EvictRetry.Std() < time.Second {
		errs = append(errs, fmt.Errorf("continuousValidation.evictRetry %s must be at least 1s", cv.EvictRetry.Std()))
	}
	l := &cv.Lease
	if l.Name == "" {
		l.Name = DefaultLeaseName
	}
	if l.Namespace == "" {
		l.Namespace = podNamespace()
	}
	if l.Duration == 0 {
		l.Duration = Duration(DefaultLeaseDuration)
	}
	if l.Renew == 0 {
		l.Renew = Duration(DefaultLeaseRenew)
	}
	if l.Retry == 0 {
		l.Retry = Duration(DefaultLeaseRetry)
	}
	for _, n := range []struct {
		what, v string
	}{{"name", l.Name}, {"namespace", l.Namespace}} {
		if !stageName.MatchString(n.v) {
			errs = append(errs, fmt.Errorf("continuousValidation.lease.%s %q must be a DNS label (lowercase letters, digits, '-')", n.what, n.v))
		}
	}
	if l.Retry <= 0 || l.Renew <= l.Retry || l.Duration <= l.Renew {
		errs = append(errs, fmt.Errorf("continuousValidation.lease: need 0 < retry (%s) < renew (%s) < duration (%s): a holder must retry before it gives up, and give up before the others take over",
			l.Retry.Std(), l.Renew.Std(), l.Duration.Std()))
	}
	if cv.Enabled && cv.Kubeconfig != "" {
		if _, err := os.Stat(cv.Kubeconfig); err != nil {
			errs = append(errs, fmt.Errorf("continuousValidation.kubeconfig: %w", err))
		}
	}
	return errs
}

// podNamespace is the namespace of the pod serve runs in, or
// DefaultLeaseNamespace outside a pod.
func podNamespace() string {
	b, err := os.ReadFile(serviceAccountNamespace)
	if ns := strings.TrimSpace(string(b)); err == nil && ns != "" {
		return ns
	}
	return DefaultLeaseNamespace
}

// What a stage's onViolation may say.
const (
	OnViolationReport = "report"
	OnViolationEvict  = "evict"
)

// validateOnViolation checks each stage's onViolation:
// evict only where admission enforces, for a stage in warn or audit mode
// admits the very pods it would evict.
func (c *Config) validateOnViolation() []error {
	var errs []error
	for i := range c.Stages {
		// Left empty for report, so that a config written out (the
		// manifests') says only what was chosen.
		s := &c.Stages[i]
		switch s.OnViolation {
		case "", OnViolationReport:
		case OnViolationEvict:
			if s.Mode != ModeEnforce {
				errs = append(errs, fmt.Errorf("stage %q: onViolation evict needs mode enforce, not %s: that mode admits the pods it would evict", s.Name, s.Mode))
			}
		default:
			errs = append(errs, fmt.Errorf("stage %q: onViolation %q must be report or evict", s.Name, s.OnViolation))
		}
	}
	return errs
}

// EvictStages are the stages whose violating pods continuous validation
// evicts (onViolation: evict).
func (c *Config) EvictStages() []string {
	var out []string
	for _, s := range c.Stages {
		if s.OnViolation == OnViolationEvict {
			out = append(out, s.Name)
		}
	}
	return out
}
