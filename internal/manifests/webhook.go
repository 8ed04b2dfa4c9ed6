package manifests

import (
	"slices"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// namespaceNameLabel is set by the API server on every namespace to its
// name, so a selector can exclude namespaces by name.
const namespaceNameLabel = "kubernetes.io/metadata.name"

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
// Then namespace.unknown-stage.stagegate.dev and
// pod.unknown-stage.stagegate.dev match a namespace or object whose stage
// label is present but names no stage ("qa", "Prod", ""), and call
// UnknownStagePath, which refuses them: a typo must not switch checking off.
//
// With ClusterStage set, cluster.S.stagegate.dev matches every namespace.
// Every entry excludes the system namespaces, stagegate's own and
// ExcludeNamespaces, matches every namespaced resource but SkipResources
// and the podless built-ins (see rules), and fails closed.
func WebhookConfiguration(o Options) *admissionregistrationv1.ValidatingWebhookConfiguration {
	o = o.withDefaults()
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "ValidatingWebhookConfiguration",
		},
		ObjectMeta: metav1.ObjectMeta{Name: "stagegate", Labels: labels(o, "webhook")},
	}
	// Validate has refused bad values; what is left still renders.
	skip, _ := skipped(o.SkipResources)
	conditions := matchConditions(skip)
	add := func(name, path string, ns, obj *metav1.LabelSelector) {
		vwc.Webhooks = append(vwc.Webhooks, validating(o, name, path, ns, obj, conditions))
	}
	for _, s := range o.Stages {
		add("namespace."+s+".stagegate.dev", ValidatePath+s, stageSelector(s), nil)
		add("pod."+s+".stagegate.dev", ValidatePath+s, nil, stageSelector(s))
	}
	add("namespace."+unknownStage+".stagegate.dev", UnknownStagePath, unknownSelector(o.Stages), nil)
	add("pod."+unknownStage+".stagegate.dev", UnknownStagePath, nil, unknownSelector(o.Stages))
	if o.ClusterStage != "" {
		add("cluster."+o.ClusterStage+".stagegate.dev", ValidatePath+o.ClusterStage, nil, nil)
	}
	return vwc
}

func stageSelector(stage string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{StageLabel: stage}}
}

// unknownSelector matches a stage label whose value is none of stages.
// Exists is needed because NotIn alone also matches a missing label.
func unknownSelector(stages []string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{
		{Key: StageLabel, Operator: metav1.LabelSelectorOpExists},
		{Key: StageLabel, Operator: metav1.LabelSelectorOpNotIn, Values: append([]string(nil), stages...)},
	}}
}

// namespaceSelector returns ns (or an empty selector) with the namespace
// exclusions added.
func namespaceSelector(o Options, ns *metav1.LabelSelector) *metav1.LabelSelector {
	if ns == nil {
		ns = &metav1.LabelSelector{}
	}
	ns.MatchExpressions = append(ns.MatchExpressions, metav1.LabelSelectorRequirement{
		Key:      namespaceNameLabel,
		Operator: metav1.LabelSelectorOpNotIn,
		Values:   o.excluded(),
	})
	return ns
}

// validating builds one entry. ns, if not nil, is merged with the
// namespace exclusions; obj is the objectSelector.
func validating(o Options, name, path string, ns, obj *metav1.LabelSelector, conditions []admissionregistrationv1.MatchCondition) admissionregistrationv1.ValidatingWebhook {
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
		ClientConfig:            clientConfig(o, path),
		Rules:                   rules(),
		FailurePolicy:           &fail,
		MatchPolicy:             &equivalent,
		NamespaceSelector:       namespaceSelector(o, ns),
		ObjectSelector:          obj,
		SideEffects:             &sideEffects,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		MatchConditions:         conditions,
	}
}

func clientConfig(o Options, path string) admissionregistrationv1.WebhookClientConfig {
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

// rules match every namespaced resource of every group and version, since
// any kind, custom ones included (Argo Rollouts, Knative Services,
// CloneSets), may carry a pod template; the server allows kinds without a
// pod spec at once. "*" matches no subresource, so pods/ephemeralcontainers,
// through which `kubectl debug` adds images to a running pod, is named in
// a second rule. Namespaces themselves are cluster-scoped and not matched.
func rules() []admissionregistrationv1.RuleWithOperations {
	namespaced := admissionregistrationv1.NamespacedScope
	ops := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	return []admissionregistrationv1.RuleWithOperations{
		{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &namespaced,
		}},
		{Operations: slices.Clone(ops), Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}, Scope: &namespaced,
		}},
	}
}
