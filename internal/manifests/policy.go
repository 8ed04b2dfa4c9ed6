package manifests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StageLabelPolicy names the ValidatingAdmissionPolicy and its binding.
const StageLabelPolicy = "stagegate-stage-label"

// StageLabelPolicies returns the ValidatingAdmissionPolicy that lets only
// StageLabelGroups add, change or remove the stage label on a namespace,
// and its binding. The label decides which stage's promotions everything
// in the namespace needs, so whoever may move it may switch the checks
// off; namespace edit rights are wider than that (GitOps tools, tenants
// who manage their own namespaces). It is CEL evaluated by the API server
// itself, so it holds when stagegate is down and cannot be bypassed by
// excluding a namespace from the webhook.
func StageLabelPolicies(o Options) []any {
	o = o.withDefaults()
	fail := admissionregistrationv1.Fail
	equivalent := admissionregistrationv1.Equivalent
	forbidden := metav1.StatusReasonForbidden
	label := strconv.Quote(StageLabel)
	groups := make([]string, len(o.StageLabelGroups))
	for i, g := range o.StageLabelGroups {
		groups[i] = strconv.Quote(g)
	}
	vap := &admissionregistrationv1.ValidatingAdmissionPolicy{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "ValidatingAdmissionPolicy",
		},
		ObjectMeta: metav1.ObjectMeta{Name: StageLabelPolicy, Labels: labels(o, "policy")},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: &fail,
			MatchConstraints: &admissionregistrationv1.MatchResources{
				MatchPolicy: &equivalent,
				ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
					RuleWithOperations: admissionregistrationv1.RuleWithOperations{
						Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
						Rule: admissionregistrationv1.Rule{
							APIGroups:   []string{""},
							APIVersions: []string{"v1"},
							// The status and finalize subresources keep
							// whatever metadata the request carries, so
							// they could move the label too.
							Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
						},
					},
				}},
			},
			Variables: []admissionregistrationv1.Variable{
				{Name: "hasNew", Expression: "has(object.metadata.labels) && " + label + " in object.metadata.labels"},
				// oldObject is null on CREATE.
				{Name: "hasOld", Expression: "oldObject != null && has(oldObject.metadata.labels) && " + label + " in oldObject.metadata.labels"},
				// Added, removed, or present in both with another value.
				{Name: "changed", Expression: "variables.hasNew != variables.hasOld || (variables.hasNew && object.metadata.labels[" + label + "] != oldObject.metadata.labels[" + label + "])"},
			},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!variables.changed || request.userInfo.groups.exists(g, g in [" + strings.Join(groups, ", ") + "])",
				Message: fmt.Sprintf("only members of the groups %s may add, change or remove the label %s on a namespace: it selects the stage whose promotions its workloads need",
					strings.Join(o.StageLabelGroups, ", "), StageLabel),
				Reason: &forbidden,
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		TypeMeta: metav1.TypeMeta{
			APIVersion: admissionregistrationv1.SchemeGroupVersion.String(),
			Kind:       "ValidatingAdmissionPolicyBinding",
		},
		ObjectMeta: metav1.ObjectMeta{Name: StageLabelPolicy, Labels: labels(o, "policy")},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName: StageLabelPolicy,
			// Every namespace, the excluded ones included: labelling one
			// changes nothing today, but an exclusion can be removed later.
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	return []any{vap, binding}
}

// validGroups checks StageLabelGroups: group names are free-form, but an
// empty or unprintable one is a mistake, and the names go into CEL and a
// message.
func validGroups(groups []string) error {
	for i, g := range groups {
		if strings.TrimSpace(g) == "" || strings.ContainsFunc(g, func(r rune) bool { return !unicode.IsPrint(r) }) {
			return fmt.Errorf("manifests: %w: stage label group %q must be a non-empty, printable group name", ErrInvalidOption, g)
		}
		if slices.Contains(groups[:i], g) {
			return fmt.Errorf("manifests: %w: stage label group %q listed twice", ErrInvalidOption, g)
		}
	}
	return nil
}
