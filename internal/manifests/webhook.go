package manifests

import (
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// namespaceNameLabel is set by the API server on every namespace to its
// name, so a selector can exclude namespaces by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

// gatedResources are the kinds that carry pod templates or are pods, by
// API group. pods/ephemeralcontainers is listed because `kubectl debug`
// adds images to a running pod through that subresource only.
var gatedResources = []struct {
	group     string
	resources []string
}{
	{"", []string{"pods", "pods/ephemeralcontainers", "replicationcontrollers"}},
	{"apps", []string{"deployments", "replicasets", "statefulsets", "daemonsets"}},
	{"batch", []string{"jobs", "cronjobs"}},
}

// WebhookConfiguration returns the ValidatingWebhookConfiguration named
// "stagegate". For each stage S, in pipeline order, it has:
//
//   - namespace.S.stagegate.dev, matching namespaces labelled
//     stagegate.dev/stage=S;
//   - pod.S.stagegate.dev, matching objects labelled stagegate.dev/stage=S
//     in any namespace. A label on the object can only add a stage to
//     check: the namespace entry still matches too, and the API server
//     requires every matching entry to allow.
//
// With ClusterStage set, cluster.S.stagegate.dev matches every namespace.
// Every entry excludes the system namespaces, stagegate's own and
// ExcludeNamespaces, and fails closed.
func WebhookConfiguration(o Options) *admissionregistrationv1.ValidatingWebhookConfiguration {
	o = o.withDefaults()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "ValidatingWebhookConfiguration",
		},
		ObjectMeta: metav1.ObjectMeta{Name: "stagegate", Labels: labels(o, "webhook")},
	}
	stageSel := func(s string) *metav1.LabelSelector {
		return &metav1.LabelSelector{MatchLabels: map[string]string{StageLabel: s}}
	}
	for _, s := range o.Stages {
		vwc.Webhooks = append(vwc.Webhooks,
			webhook(o, "namespace."+s+".stagegate.dev", s, stageSel(s), nil),
			webhook(o, "pod."+s+".stagegate.dev", s, nil, stageSel(s)),
		)
	}
	if o.ClusterStage != "" {
		vwc.Webhooks = append(vwc.Webhooks,
			webhook(o, "cluster."+o.ClusterStage+".stagegate.dev", o.ClusterStage, nil, nil))
	}
	return vwc
}

// webhook builds one entry. ns, if not nil, is merged with the namespace
// exclusions; obj is the objectSelector.
func webhook(o Options, name, stage string, ns, obj *metav1.LabelSelector) admissionregistrationv1.ValidatingWebhook {
	if ns == nil {
		ns = &metav1.LabelSelector{}
	}
	ns.MatchExpressions = append(ns.MatchExpressions, metav1.LabelSelectorRequirement{
		Key:      namespaceNameLabel,
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   o.excluded(),
	})
	fail := admissionregistrationv1.Fail
	// Admission itself has no side effects; break-glass admissions are
	// recorded only when the request is not a dry run.
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	// Equivalent: a workload sent through another API version of the same
	// resource (e.g. a future apps/v2) is still checked.
	equivalent := admissionregistrationv1.Equivalent
	timeout := o.TimeoutSeconds
	return admissionregistrationv1.ValidatingWebhook{
		Name:                    name,
		ClientConfig:            clientConfig(o, stage),
		Rules:                   rules(),
		FailurePolicy:           &fail,
		MatchPolicy:             &equivalent,
		NamespaceSelector:       ns,
		ObjectSelector:          obj,
		SideEffects:             &sideEffects,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
	}
}

func clientConfig(o Options, stage string) admissionregistrationv1.WebhookClientConfig {
	path := ValidatePath + stage
	cc := admissionregistrationv1.WebhookClientConfig{CABundle: o.CABundle}
	if o.URL != "" {
		u := strings.TrimSuffix(o.URL, "/") + path
		cc.URL = &u
		return cc
	}
	port := int32(443)
	cc.Service = &admissionregistrationv1.ServiceReference{
		Namespace: o.Namespace,
		Name:      o.Service,
		Path:      &path,
		Port:      &port,
	}
	return cc
}

func rules() []admissionregistrationv1.RuleWithOperations {
	namespaced := admissionregistrationv1.NamespacedScope
	var out []admissionregistrationv1.RuleWithOperations
	for _, g := range gatedResources {
		out = append(out, admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{
				admissionregistrationv1.Create, admissionregistrationv1.Update,
			},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{g.group},
				APIVersions: []string{"v1"},
				Resources:   append([]string(nil), g.resources...),
				Scope:       &namespaced,
			},
		})
	}
	return out
}
