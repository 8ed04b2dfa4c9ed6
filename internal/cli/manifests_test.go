package cli

import (
	"errors"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/manifests"
)

// documents splits multi-document YAML into the kinds, in order, and the
// documents by kind (the last of each kind).
func documents(t *testing.T, out string) ([]string, map[string]string) {
	t.Helper()
	var kinds []string
	byKind := map[string]string{}
	for _, doc := range strings.Split(out, "---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m struct{ Kind string }
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		kinds = append(kinds, m.Kind)
		byKind[m.Kind] = doc
	}
	return kinds, byKind
}

func TestManifestsCommand(t *testing.T) {
	admission := []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ValidatingWebhookConfiguration"}
	tests := []struct {
		name  string
		args  []string
		kinds []string // the admission kinds at the end of the output, in order
		check func(t *testing.T, docs map[string]string)
	}{
		{
			name:  "defaults",
			args:  nil,
			kinds: admission,
			check: func(t *testing.T, docs map[string]string) {
				if docs["Deployment"] == "" || docs["MutatingWebhookConfiguration"] != "" {
					t.Errorf("want the Deployment and no mutating webhook")
				}
				var vap admissionregistrationv1.ValidatingAdmissionPolicy
				if err := yaml.Unmarshal([]byte(docs["ValidatingAdmissionPolicy"]), &vap); err != nil {
					t.Fatal(err)
				}
				if e := vap.Spec.Validations[0].Expression; !strings.HasSuffix(e, `g in ["system:masters"])`) {
					t.Errorf("default groups: %s", e)
				}
			},
		},
		{
			name: "webhook only, pinned, skipped, groups",
			args: []string{"--webhook-only", "--pin-tags", "prod", "--skip-resource", "widgets.example.com",
				"--skip-resource", "clonesets.apps.kruise.io,configmaps",
				"--stage-label-group", "system:masters", "--stage-label-group", "cn=admins,o=example"},
			kinds: append(slices.Clone(admission), "MutatingWebhookConfiguration"),
			check: func(t *testing.T, docs map[string]string) {
				if docs["Deployment"] != "" {
					t.Errorf("--webhook-only printed the Deployment")
				}
				var vwc admissionregistrationv1.ValidatingWebhookConfiguration
				if err := yaml.Unmarshal([]byte(docs["ValidatingWebhookConfiguration"]), &vwc); err != nil {
					t.Fatal(err)
				}
				cond := vwc.Webhooks[0].MatchConditions[0].Expression
				for _, want := range []string{`"example.com" && request.resource.resource == "widgets"`,
					`"apps.kruise.io" && request.resource.resource == "clonesets"`, `"" && request.resource.resource == "configmaps"`} {
					if !strings.Contains(cond, want) {
						t.Errorf("match condition lacks %s:\n%s", want, cond)
					}
				}
				var vap admissionregistrationv1.ValidatingAdmissionPolicy
				if err := yaml.Unmarshal([]byte(docs["ValidatingAdmissionPolicy"]), &vap); err != nil {
					t.Fatal(err)
				}
				// A comma stays inside one group name.
				if e := vap.Spec.Validations[0].Expression; !strings.HasSuffix(e, `g in ["system:masters", "cn=admins,o=example"])`) {
					t.Errorf("groups: %s", e)
				}
				var mwc admissionregistrationv1.MutatingWebhookConfiguration
				if err := yaml.Unmarshal([]byte(docs["MutatingWebhookConfiguration"]), &mwc); err != nil {
					t.Fatal(err)
				}
				if len(mwc.Webhooks) != 2 || *mwc.Webhooks[0].ClientConfig.Service.Path != manifests.MutatePath+"prod" {
					t.Errorf("mutating entries %+v", mwc.Webhooks)
				}
			},
		},
		{
			name:  "pin every stage",
			args:  []string{"--webhook-only", "--pin-tags", "*"},
			kinds: append(slices.Clone(admission), "MutatingWebhookConfiguration"),
			check: func(t *testing.T, docs map[string]string) {
				var mwc admissionregistrationv1.MutatingWebhookConfiguration
				if err := yaml.Unmarshal([]byte(docs["MutatingWebhookConfiguration"]), &mwc); err != nil {
					t.Fatal(err)
				}
				if len(mwc.Webhooks) != 8 {
					t.Errorf("%d mutating entries, want 2 for each of the 4 default stages", len(mwc.Webhooks))
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := run(t, append([]string{"manifests", "--ca-file", ""}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			kinds, docs := documents(t, out)
			if len(kinds) < len(tt.kinds) || !slices.Equal(kinds[len(kinds)-len(tt.kinds):], tt.kinds) {
				t.Fatalf("kinds %v, want them to end with %v", kinds, tt.kinds)
			}
			tt.check(t, docs)
		})
	}
}

func TestManifestsCommandErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want error
		msg  string
	}{
		{"kind instead of resource", []string{"--skip-resource", "Widget.example.com"}, manifests.ErrInvalidOption, "kubectl api-resources"},
		{"skip pods", []string{"--skip-resource", "pods"}, manifests.ErrInvalidOption, "carries pod specs"},
		{"pin unknown stage", []string{"--pin-tags", "qa"}, manifests.ErrUnknownStage, `"qa" is not one of`},
		{"pin every stage and one", []string{"--pin-tags", "*,prod"}, manifests.ErrInvalidOption, "already means every stage"},
		{"empty group", []string{"--stage-label-group", ""}, manifests.ErrInvalidOption, "stage label group"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, append([]string{"manifests", "--ca-file", "", "--webhook-only"}, tt.args...)...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v naming %q", err, tt.want, tt.msg)
			}
		})
	}
}
