package manifests

import (
	"fmt"
	"slices"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MutatingWebhookConfiguration returns the MutatingWebhookConfiguration
// named "stagegate" that rewrites image tags to the digests the server
// checked, or nil when PinTags is empty. A tag is checked at admission but
// pulled later by the kubelet, so a tag moved in between would run an
// image nobody checked. For each pinned stage S it has
// namespace.S.pin.stagegate.dev and pod.S.pin.stagegate.dev, with the
// selectors of the validating entries, calling MutatePath+S; and
// cluster.S.pin.stagegate.dev when S is the ClusterStage.
//
// It matches pods only: the templates of Deployments and the like keep
// their tags, so GitOps tools that compare them with Git see no drift,
// while every pod is still pinned when it is created from them.
func MutatingWebhookConfiguration(o Options) *admissionregistrationv1.MutatingWebhookConfiguration {
	o = o.withDefaults()
	stages, _ := pinStages(o)
	if len(stages) == 0 {
		return nil
	}
	mwc := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "MutatingWebhookConfiguration",
		},
		ObjectMeta: metav1.ObjectMeta{Name: "stagegate", Labels: labels(o, "webhook")},
	}
	for _, s := range stages {
		mwc.Webhooks = append(mwc.Webhooks,
			mutating(o, "namespace."+s+".pin.stagegate.dev", s, stageSelector(s), nil),
			mutating(o, "pod."+s+".pin.stagegate.dev", s, nil, stageSelector(s)),
		)
		if s == o.ClusterStage {
			mwc.Webhooks = append(mwc.Webhooks, mutating(o, "cluster."+s+".pin.stagegate.dev", s, nil, nil))
		}
	}
	return mwc
}

func mutating(o Options, name, stage string, ns, obj *metav1.LabelSelector) admissionregistrationv1.MutatingWebhook {
	fail := admissionregistrationv1.Fail
	// Pinning only rewrites the request; nothing is recorded.
	sideEffects := admissionregistrationv1.SideEffectClassNone
	equivalent := admissionregistrationv1.Equivalent
	// IfNeeded: a later mutating webhook that adds a container (a sidecar
	// injector) gets its tag pinned too.
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	namespaced := admissionregistrationv1.NamespacedScope
	timeout := o.TimeoutSeconds
	return admissionregistrationv1.MutatingWebhook{
		Name:         name,
		ClientConfig: clientConfig(o, MutatePath+stage),
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{""},
				APIVersions: []string{"v1"},
				// `kubectl debug` adds containers through the subresource.
				Resources: []string{"pods", "pods/ephemeralcontainers"},
				Scope:     &namespaced,
			},
		}},
		FailurePolicy:           &fail,
		MatchPolicy:             &equivalent,
		NamespaceSelector:       namespaceSelector(o, ns),
		ObjectSelector:          obj,
		SideEffects:             &sideEffects,
		TimeoutSeconds:          &timeout,
		AdmissionReviewVersions: []string{"v1"},
		ReinvocationPolicy:      &reinvoke,
	}
}

// pinStages returns the stages of PinTags in pipeline order, AllStages
// expanded.
func pinStages(o Options) ([]string, error) {
	if slices.Contains(o.PinTags, AllStages) {
		if len(o.PinTags) > 1 {
			return nil, fmt.Errorf("manifests: %w: pin tags %v: %q already means every stage", ErrInvalidOption, o.PinTags, AllStages)
		}
		return slices.Clone(o.Stages), nil
	}
	for i, s := range o.PinTags {
		if !slices.Contains(o.Stages, s) {
			return nil, fmt.Errorf("manifests: %w: pin tags: stage %q is not one of %v", ErrUnknownStage, s, o.Stages)
		}
		if slices.Contains(o.PinTags[:i], s) {
			return nil, fmt.Errorf("manifests: %w: pin tags: stage %q listed twice", ErrInvalidOption, s)
		}
	}
	var out []string
	for _, s := range o.Stages {
		if slices.Contains(o.PinTags, s) {
			out = append(out, s)
		}
	}
	return out, nil
}
