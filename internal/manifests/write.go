package manifests

import (
	"encoding/json"
	"fmt"
	"io"

	"sigs.k8s.io/yaml"
)

// Write renders objs as one multi-document YAML stream, each document
// starting with "---". Objects are typed k8s.io/api values (or anything
// that marshals to a JSON object). Status is dropped (a claim
// template's too, when empty), and so is an empty spec: they are what
// typed objects carry but one would not write by hand.
func Write(w io.Writer, objs ...any) error {
	for i, obj := range objs {
		j, err := json.Marshal(obj)
		if err != nil {
			return fmt.Errorf("manifests: object %d: %w", i, err)
		}
		var m map[string]any
		if err := json.Unmarshal(j, &m); err != nil {
			return fmt.Errorf("manifests: object %d is not a JSON object: %w", i, err)
		}
		delete(m, "status")
		dropEmptyStatus(m)
		if spec, ok := m["spec"].(map[string]any); ok && len(spec) == 0 {
			delete(m, "spec")
		}
		y, err := yaml.Marshal(m)
		if err != nil {
			return fmt.Errorf("manifests: object %d: %w", i, err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", y); err != nil {
			return fmt.Errorf("manifests: %w", err)
		}
	}
	return nil
}

// dropEmptyStatus removes the empty status of a StatefulSet's claim
// templates. Only there: elsewhere (a CRD's schema, say) a "status" key
// may mean something.
func dropEmptyStatus(m map[string]any) {
	spec, _ := m["spec"].(map[string]any)
	claims, _ := spec["volumeClaimTemplates"].([]any)
	for _, c := range claims {
		if c, ok := c.(map[string]any); ok {
			if st, ok := c["status"].(map[string]any); ok && len(st) == 0 {
				delete(c, "status")
			}
		}
	}
}

// All returns every object of an installation in apply order: those of
// Deployment, then those of Admission, so that the webhooks are only
// registered once their Service can exist.
func All(o Options) []any {
	var out []any
	for _, obj := range Deployment(o) {
		out = append(out, obj)
	}
	return append(out, Admission(o)...)
}

// Admission returns the admission objects, which need no server running:
// the stage-label ValidatingAdmissionPolicy and its binding, the
// ValidatingWebhookConfiguration, and the MutatingWebhookConfiguration
// when PinTags is set.
func Admission(o Options) []any {
	out := StageLabelPolicies(o)
	out = append(out, WebhookConfiguration(o))
	if mwc := MutatingWebhookConfiguration(o); mwc != nil {
		out = append(out, mwc)
	}
	return out
}
