package manifests

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// webhookName is what the API server accepts: a DNS subdomain of at least
// three segments.
var webhookName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?){2,}$`)

var defaultExcluded = []string{"kube-system", "kube-public", "kube-node-lease", DefaultNamespace}

func TestWebhookConfigurationStructure(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		entries  int
		excluded []string
		skipped  []string // besides podlessResources, in kubectl form
	}{
		{
			name:     "defaults",
			o:        Options{Stages: []string{"dev", "test", "stage", "prod"}},
			entries:  10,
			excluded: defaultExcluded,
		},
		{
			name:     "cluster stage and extra exclusions",
			o:        Options{Stages: []string{"dev", "prod"}, Namespace: "gate", ClusterStage: "prod", ExcludeNamespaces: []string{"monitoring"}},
			entries:  7,
			excluded: []string{"kube-system", "kube-public", "kube-node-lease", "gate", "monitoring"},
		},
		{
			name:     "url",
			o:        Options{Stages: []string{"one"}, URL: "https://127.0.0.1:8443"},
			entries:  4,
			excluded: defaultExcluded,
		},
		{
			name: "skipped resources",
			o: Options{Stages: []string{"one"}, SkipResources: []string{
				"widgets.example.com", "configmaps", "widgets.example.com", "leases.coordination.k8s.io",
			}},
			entries:  4,
			excluded: defaultExcluded,
			skipped:  []string{"widgets.example.com", "configmaps"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vwc := WebhookConfiguration(tt.o)
			if vwc.Name != "stagegate" || vwc.Kind != "ValidatingWebhookConfiguration" || vwc.APIVersion != "admissionregistration.k8s.io/v1" {
				t.Errorf("object = %s %s %q", vwc.APIVersion, vwc.Kind, vwc.Name)
			}
			if len(vwc.Webhooks) != tt.entries {
				t.Fatalf("%d entries, want %d", len(vwc.Webhooks), tt.entries)
			}
			seen := map[string]bool{}
			for _, w := range vwc.Webhooks {
				if seen[w.Name] {
					t.Errorf("duplicate entry name %q", w.Name)
				}
				seen[w.Name] = true
				if !webhookName.MatchString(w.Name) {
					t.Errorf("entry name %q is not a qualified name", w.Name)
				}
				kind, stage, _ := strings.Cut(strings.TrimSuffix(w.Name, ".stagegate.dev"), ".")
				checkEntry(t, tt.o, w, kind, stage, tt.excluded)
				checkSkipped(t, w.Name, w.MatchConditions, tt.skipped)
			}
			for _, s := range append(slices.Clone(tt.o.Stages), unknownStage) {
				for _, kind := range []string{"namespace", "pod"} {
					if !seen[kind+"."+s+".stagegate.dev"] {
						t.Errorf("stage %q has no %s entry", s, kind)
					}
				}
			}
		})
	}
}

// checkEntry checks a validating entry of the given kind (namespace, pod
// or cluster) and stage (or unknownStage).
func checkEntry(t *testing.T, o Options, w admissionregistrationv1.ValidatingWebhook, kind, stage string, excluded []string) {
	t.Helper()
	path := "/admission/validate/" + stage
	if stage == unknownStage {
		path = "/admission/unknown-stage"
	}
	checkClient(t, o, w.Name, w.ClientConfig, path)
	if *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("%s: failurePolicy %s", w.Name, *w.FailurePolicy)
	}
	if *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun || *w.MatchPolicy != admissionregistrationv1.Equivalent {
		t.Errorf("%s: sideEffects %s matchPolicy %s", w.Name, *w.SideEffects, *w.MatchPolicy)
	}
	if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("%s: admissionReviewVersions %v", w.Name, w.AdmissionReviewVersions)
	}
	checkTimeout(t, o, w.Name, w.TimeoutSeconds)
	checkSelectors(t, o, w.Name, w.NamespaceSelector, w.ObjectSelector, kind, stage, excluded)

	// Every namespaced resource, and the one subresource that adds images.
	namespaced := admissionregistrationv1.NamespacedScope
	ops := []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}
	want := []admissionregistrationv1.RuleWithOperations{
		{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: &namespaced}},
		{Operations: ops, Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods/ephemeralcontainers"}, Scope: &namespaced}},
	}
	if got := fmt.Sprintf("%+v", derefRules(w.Rules)); got != fmt.Sprintf("%+v", derefRules(want)) {
		t.Errorf("%s: rules %s, want %s", w.Name, got, fmt.Sprintf("%+v", derefRules(want)))
	}
}

// derefRules makes rules printable with their scopes.
func derefRules(rules []admissionregistrationv1.RuleWithOperations) []string {
	var out []string
	for _, r := range rules {
		out = append(out, fmt.Sprintf("%v %v %v %v %s", r.Operations, r.APIGroups, r.APIVersions, r.Resources, *r.Scope))
	}
	return out
}

func checkClient(t *testing.T, o Options, name string, cc admissionregistrationv1.WebhookClientConfig, path string) {
	t.Helper()
	switch {
	case o.URL != "":
		if cc.URL == nil || *cc.URL != strings.TrimSuffix(o.URL, "/")+path || cc.Service != nil {
			t.Errorf("%s: client config %+v, want url ending in %s", name, cc, path)
		}
	default:
		svc := cc.Service
		if svc == nil || svc.Path == nil || *svc.Path != path || *svc.Port != 443 || cc.URL != nil {
			t.Errorf("%s: client config %+v, want service path %s port 443", name, cc, path)
		}
	}
	if string(cc.CABundle) != string(o.CABundle) {
		t.Errorf("%s: caBundle %q, want %q", name, cc.CABundle, o.CABundle)
	}
}

func checkTimeout(t *testing.T, o Options, name string, got *int32) {
	t.Helper()
	want := o.TimeoutSeconds
	if want == 0 {
		want = DefaultTimeoutSeconds
	}
	if *got != want {
		t.Errorf("%s: timeout %d, want %d", name, *got, want)
	}
}

// checkSelectors checks an entry's selectors: the namespace exclusions
// always come last in its namespaceSelector; the stage selection is on
// the namespace or on the object, by kind.
func checkSelectors(t *testing.T, o Options, name string, ns, obj *metav1.LabelSelector, kind, stage string, excluded []string) {
	t.Helper()
	if ns == nil || len(ns.MatchExpressions) == 0 {
		t.Fatalf("%s: no namespace exclusions", name)
	}
	last := ns.MatchExpressions[len(ns.MatchExpressions)-1]
	if last.Key != "kubernetes.io/metadata.name" || last.Operator != metav1.LabelSelectorOpNotIn || !slices.Equal(last.Values, excluded) {
		t.Errorf("%s: namespace exclusions %+v, want NotIn %v", name, last, excluded)
	}
	nsSel := &metav1.LabelSelector{MatchLabels: ns.MatchLabels, MatchExpressions: ns.MatchExpressions[:len(ns.MatchExpressions)-1]}
	unknown := []metav1.LabelSelectorRequirement{
		{Key: StageLabel, Operator: metav1.LabelSelectorOpExists},
		{Key: StageLabel, Operator: metav1.LabelSelectorOpNotIn, Values: o.Stages},
	}
	// selects reports whether s selects by the stage label only: the
	// value stage, or any value but the stages.
	selects := func(s *metav1.LabelSelector) bool {
		if s == nil {
			return false
		}
		if stage == unknownStage {
			return len(s.MatchLabels) == 0 && fmt.Sprint(s.MatchExpressions) == fmt.Sprint(unknown)
		}
		return maps.Equal(s.MatchLabels, map[string]string{StageLabel: stage}) && len(s.MatchExpressions) == 0
	}
	empty := func(s *metav1.LabelSelector) bool {
		return s == nil || (len(s.MatchLabels) == 0 && len(s.MatchExpressions) == 0)
	}
	switch kind {
	case "namespace":
		if !selects(nsSel) || obj != nil {
			t.Errorf("%s: namespace selector %+v object selector %+v", name, nsSel, obj)
		}
	case "pod":
		if !selects(obj) || !empty(nsSel) {
			t.Errorf("%s: object selector %+v namespace selector %+v", name, obj, nsSel)
		}
	case "cluster":
		if stage != o.ClusterStage || !empty(nsSel) || obj != nil {
			t.Errorf("%s: cluster entry must have no label selector", name)
		}
	default:
		t.Errorf("unexpected entry %q", name)
	}
}

// checkSkipped checks that the one match condition leaves out exactly the
// podless built-ins and skipped.
func checkSkipped(t *testing.T, name string, conds []admissionregistrationv1.MatchCondition, skipped []string) {
	t.Helper()
	if len(conds) != 1 || conds[0].Name != "not-skipped" {
		t.Fatalf("%s: match conditions %+v", name, conds)
	}
	var want []string
	for _, r := range podlessResources {
		want = append(want, r.String())
	}
	want = append(want, skipped...)
	terms := strings.Split(conds[0].Expression, " &&\n")
	if len(terms) != len(want) {
		t.Errorf("%s: %d terms, want %d:\n%s", name, len(terms), len(want), conds[0].Expression)
	}
	for _, s := range want {
		res, group, _ := strings.Cut(s, ".")
		term := fmt.Sprintf(`!(request.resource.group == %q && request.resource.resource == %q)`, group, res)
		if !slices.Contains(terms, term) {
			t.Errorf("%s: %s not skipped:\n%s", name, s, conds[0].Expression)
		}
	}
}

func TestMutatingWebhookConfiguration(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		entries []string // names, in order; none means no object
	}{
		{"off by default", Options{Stages: []string{"dev", "prod"}}, nil},
		{"one stage", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"prod"}},
			[]string{"namespace.prod.pin.stagegate.dev", "pod.prod.pin.stagegate.dev"}},
		{"every stage, in pipeline order", Options{Stages: []string{"dev", "test", "prod"}, PinTags: []string{"*"}, URL: "https://10.0.0.1:8443/", CABundle: []byte(testCA), TimeoutSeconds: 12},
			[]string{"namespace.dev.pin.stagegate.dev", "pod.dev.pin.stagegate.dev", "namespace.test.pin.stagegate.dev", "pod.test.pin.stagegate.dev",
				"namespace.prod.pin.stagegate.dev", "pod.prod.pin.stagegate.dev"}},
		{"listed out of order", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"prod", "dev"}},
			[]string{"namespace.dev.pin.stagegate.dev", "pod.dev.pin.stagegate.dev", "namespace.prod.pin.stagegate.dev", "pod.prod.pin.stagegate.dev"}},
		{"cluster stage pinned", Options{Stages: []string{"dev", "prod"}, ClusterStage: "prod", PinTags: []string{"prod"}, ExcludeNamespaces: []string{"monitoring"}},
			[]string{"namespace.prod.pin.stagegate.dev", "pod.prod.pin.stagegate.dev", "cluster.prod.pin.stagegate.dev"}},
		{"cluster stage not pinned", Options{Stages: []string{"dev", "prod"}, ClusterStage: "prod", PinTags: []string{"dev"}},
			[]string{"namespace.dev.pin.stagegate.dev", "pod.dev.pin.stagegate.dev"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mwc := MutatingWebhookConfiguration(tt.o)
			if tt.entries == nil {
				if mwc != nil {
					t.Fatalf("got %d entries, want no object", len(mwc.Webhooks))
				}
				return
			}
			if mwc.Name != "stagegate" || mwc.Kind != "MutatingWebhookConfiguration" || mwc.APIVersion != "admissionregistration.k8s.io/v1" {
				t.Errorf("object = %s %s %q", mwc.APIVersion, mwc.Kind, mwc.Name)
			}
			var names []string
			for _, w := range mwc.Webhooks {
				names = append(names, w.Name)
			}
			if !slices.Equal(names, tt.entries) {
				t.Fatalf("entries %v, want %v", names, tt.entries)
			}
			excluded := tt.o.withDefaults().excluded()
			for _, w := range mwc.Webhooks {
				kind, rest, _ := strings.Cut(w.Name, ".")
				stage := strings.TrimSuffix(rest, ".pin.stagegate.dev")
				if !webhookName.MatchString(w.Name) {
					t.Errorf("entry name %q is not a qualified name", w.Name)
				}
				checkClient(t, tt.o, w.Name, w.ClientConfig, "/admission/mutate/"+stage)
				checkTimeout(t, tt.o, w.Name, w.TimeoutSeconds)
				checkSelectors(t, tt.o, w.Name, w.NamespaceSelector, w.ObjectSelector, kind, stage, excluded)
				if *w.FailurePolicy != admissionregistrationv1.Fail || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
					*w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy || *w.MatchPolicy != admissionregistrationv1.Equivalent {
					t.Errorf("%s: failurePolicy %s sideEffects %s reinvocation %s matchPolicy %s",
						w.Name, *w.FailurePolicy, *w.SideEffects, *w.ReinvocationPolicy, *w.MatchPolicy)
				}
				// Pods only: templates keep their tags.
				if got := derefRules(w.Rules); !slices.Equal(got, []string{"[CREATE UPDATE] [] [v1] [pods pods/ephemeralcontainers] Namespaced"}) {
					t.Errorf("%s: rules %v", w.Name, got)
				}
				if len(w.MatchConditions) != 0 {
					t.Errorf("%s: match conditions %+v", w.Name, w.MatchConditions)
				}
			}
		})
	}
}

func TestStageLabelPolicies(t *testing.T) {
	tests := []struct {
		name   string
		groups []string
		cel    string // the list in the validation's expression
		msg    string // how the message names the groups
	}{
		{"default", nil, `["system:masters"]`, "groups system:masters may"},
		{"configured", []string{"platform-admins", "system:serviceaccounts:argocd"},
			`["platform-admins", "system:serviceaccounts:argocd"]`, "groups platform-admins, system:serviceaccounts:argocd may"},
		{"quoted", []string{`a "b" \c`}, `["a \"b\" \\c"]`, `groups a "b" \c may`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			objs := StageLabelPolicies(Options{Stages: []string{"dev"}, StageLabelGroups: tt.groups})
			if len(objs) != 2 {
				t.Fatalf("%d objects", len(objs))
			}
			vap, ok1 := objs[0].(*admissionregistrationv1.ValidatingAdmissionPolicy)
			binding, ok2 := objs[1].(*admissionregistrationv1.ValidatingAdmissionPolicyBinding)
			if !ok1 || !ok2 {
				t.Fatalf("objects %T %T", objs[0], objs[1])
			}
			if vap.Kind != "ValidatingAdmissionPolicy" || binding.Kind != "ValidatingAdmissionPolicyBinding" ||
				vap.APIVersion != "admissionregistration.k8s.io/v1" || binding.APIVersion != vap.APIVersion {
				t.Errorf("kinds %s %s %s", vap.APIVersion, vap.Kind, binding.Kind)
			}
			if vap.Name != StageLabelPolicy || binding.Spec.PolicyName != vap.Name ||
				!slices.Equal(binding.Spec.ValidationActions, []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny}) {
				t.Errorf("binding %+v of policy %q", binding.Spec, vap.Name)
			}
			if binding.Spec.MatchResources != nil || binding.Spec.ParamRef != nil {
				t.Errorf("binding narrows the policy: %+v", binding.Spec)
			}
			if *vap.Spec.FailurePolicy != admissionregistrationv1.Fail {
				t.Errorf("failurePolicy %s", *vap.Spec.FailurePolicy)
			}
			rr := vap.Spec.MatchConstraints.ResourceRules
			if len(rr) != 1 || !slices.Equal(rr[0].APIGroups, []string{""}) ||
				!slices.Equal(rr[0].Resources, []string{"namespaces", "namespaces/status", "namespaces/finalize"}) ||
				!slices.Equal(rr[0].Operations, []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}) {
				t.Errorf("resource rules %+v", rr)
			}
			v := vap.Spec.Validations
			if len(v) != 1 || !strings.HasSuffix(v[0].Expression, "g in "+tt.cel+")") {
				t.Fatalf("validations %+v, want the groups %s", v, tt.cel)
			}
			if !strings.Contains(v[0].Message, tt.msg) || !strings.Contains(v[0].Message, StageLabel) || strings.Contains(v[0].Message, "\n") {
				t.Errorf("message %q must name the label and %q on one line", v[0].Message, tt.msg)
			}
			if *v[0].Reason != metav1.StatusReasonForbidden {
				t.Errorf("reason %s", *v[0].Reason)
			}
			for _, vr := range vap.Spec.Variables {
				if strings.Contains(vr.Expression, "labels") && !strings.Contains(vr.Expression, `"`+StageLabel+`"`) {
					t.Errorf("variable %s does not name the label: %s", vr.Name, vr.Expression)
				}
			}
		})
	}
}

// TestAdmission checks what --webhook-only prints and the order of All:
// the server's objects first, the webhooks last.
func TestAdmission(t *testing.T) {
	kinds := func(objs []any) []string {
		var out []string
		for _, o := range objs {
			out = append(out, strings.TrimPrefix(fmt.Sprintf("%T", o), "*"))
		}
		return out
	}
	admission := []string{"v1.ValidatingAdmissionPolicy", "v1.ValidatingAdmissionPolicyBinding", "v1.ValidatingWebhookConfiguration"}
	tests := []struct {
		name string
		o    Options
		want []string
	}{
		{"no pinning", Options{Stages: []string{"dev"}}, admission},
		{"pinning", Options{Stages: []string{"dev"}, PinTags: []string{"dev"}}, append(slices.Clone(admission), "v1.MutatingWebhookConfiguration")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := kinds(Admission(tt.o)); !slices.Equal(got, tt.want) {
				t.Errorf("Admission: %v, want %v", got, tt.want)
			}
			all := kinds(All(tt.o))
			if got := all[len(all)-len(tt.want):]; !slices.Equal(got, tt.want) || !slices.Contains(all, "v1.Deployment") {
				t.Errorf("All: %v, want the Deployment's objects then %v", all, tt.want)
			}
		})
	}
}
