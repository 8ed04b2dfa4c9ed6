package cli

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
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
			out, _, err := run(t, append([]string{"manifests", "--ca-file", "", "--registry", "ghcr.io"}, tt.args...)...)
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

// named splits multi-document YAML by "Kind/name".
func named(t *testing.T, out string) map[string]string {
	t.Helper()
	docs := map[string]string{}
	// Split at document markers only: a PEM block holds "-----" too.
	for _, doc := range regexp.MustCompile(`(?m)^---\n`).Split(out, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m struct {
			Kind     string
			Metadata struct{ Name string }
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%v in:\n%s", err, doc)
		}
		docs[m.Kind+"/"+m.Metadata.Name] = doc
	}
	return docs
}

// TestManifestsCommandClientAuth checks the webhook's client certificate
// and NetworkPolicy flags, and what the command says on stderr about what
// its output leaves open.
func TestManifestsCommandClientAuth(t *testing.T) {
	const pem = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte(pem), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		caMap    bool   // the apiserver-ca ConfigMap is generated
		clientCA string // admission.clientCAFile in the server's config
		webhook  []string
		stderr   []string // substrings, in any order
		quiet    []string // substrings stderr must not hold
	}{
		{
			name: "defaults", clientCA: manifests.APIServerCADir + "/ca.crt",
			stderr: []string{"any source reach the webhook's port 9443", "create configmap stagegate-apiserver-ca --from-file=ca.crt="},
			quiet:  []string{"warning"},
		},
		{
			name:  "CA and peers",
			args:  []string{"--webhook-client-ca", caFile, "--apiserver-cidr", "192.0.2.0/28,2001:db8::/64", "--apiserver-pods", "kube-system/k8s-app in (konnectivity-agent,proxy)"},
			caMap: true, clientCA: manifests.APIServerCADir + "/ca.crt",
			webhook: []string{"cidr: 192.0.2.0/28", "cidr: 2001:db8::/64", "- konnectivity-agent\n", "kubernetes.io/metadata.name: kube-system"},
			quiet:   []string{"any source", "configmap", "warning"},
		},
		{
			name:    "client certificate off",
			args:    []string{"--webhook-client-auth=false", "--apiserver-cidr", "172.16.0.0/28"},
			webhook: []string{"cidr: 172.16.0.0/28"},
			stderr:  []string{"warning: the webhook does not ask for the API server's client certificate", "NetworkPolicy is the only fence"},
			quiet:   []string{"configmap"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := run(t, append([]string{"manifests", "--ca-file", "", "--registry", "ghcr.io"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			docs := named(t, out)
			cm, ok := docs["ConfigMap/stagegate-apiserver-ca"]
			if ok != tt.caMap || (ok && !strings.Contains(cm, "MIIBdGVzdA==")) {
				t.Errorf("apiserver-ca ConfigMap generated=%v, want %v:\n%s", ok, tt.caMap, cm)
			}
			var cfgMap struct{ Data map[string]string }
			if err := yaml.Unmarshal([]byte(docs["ConfigMap/stagegate-config"]), &cfgMap); err != nil {
				t.Fatal(err)
			}
			var cfg config.Config
			if err := yaml.UnmarshalStrict([]byte(cfgMap.Data[manifests.ConfigFile]), &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.Admission.Listen != ":9443" || cfg.Admission.ClientCAFile != tt.clientCA {
				t.Errorf("admission %+v, want listen :9443 and clientCAFile %q", cfg.Admission, tt.clientCA)
			}
			var np networkingv1.NetworkPolicy
			if err := yaml.Unmarshal([]byte(docs["NetworkPolicy/stagegate"]), &np); err != nil {
				t.Fatal(err)
			}
			// No peer is the open rule: any source.
			if len(np.Spec.Ingress) != 2 || (len(np.Spec.Ingress[0].From) == 0) != (len(tt.webhook) == 0) {
				t.Fatalf("ingress %+v, want the webhook's rule open=%v", np.Spec.Ingress, len(tt.webhook) == 0)
			}
			rule, err := yaml.Marshal(np.Spec.Ingress[0])
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.webhook {
				if !strings.Contains(string(rule), w) {
					t.Errorf("webhook rule lacks %q:\n%s", w, rule)
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.quiet {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr holds %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestManifestsCommandClientAuthErrors(t *testing.T) {
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want error
		msg  string
	}{
		{"off without peers", []string{"--webhook-client-auth=false"}, manifests.ErrInvalidOption, "--apiserver-cidr"},
		{"off with a CA", []string{"--webhook-client-auth=false", "--apiserver-cidr", "10.0.0.0/8", "--webhook-client-ca", caFile}, manifests.ErrInvalidOption, "turned off"},
		{"CA not PEM", []string{"--webhook-client-ca", caFile}, manifests.ErrInvalidOption, "holds no PEM certificate"},
		{"cidr with host bits", []string{"--apiserver-cidr", "10.1.2.3/8"}, manifests.ErrInvalidOption, "write 10.0.0.0/8 for the range, or 10.1.2.3/32"},
		{"address without length", []string{"--api-client-cidr", "203.0.113.9"}, manifests.ErrInvalidOption, "one address is /32"},
		{"bad pod selector", []string{"--apiserver-pods", "kube-system/app in x"}, manifests.ErrInvalidOption, "apiserver pods"},
		{"bad namespace selector", []string{"--api-client-namespaces", "a in b"}, manifests.ErrInvalidOption, "api client namespaces"},
		{"missing CA file", []string{"--webhook-client-ca", "/nonexistent/ca.crt"}, os.ErrNotExist, "webhook client CA"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, append([]string{"manifests", "--ca-file", "", "--registry", "ghcr.io"}, tt.args...)...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v naming %q", err, tt.want, tt.msg)
			}
		})
	}
}

// TestManifestsCommandSafeDefaults checks --registry, --registry-allow-list
// and --checkpoint-guard: what the server's config says, whether the
// guard's claim is generated and mounted, and what stderr says.
func TestManifestsCommandSafeDefaults(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "config.yaml")
	caFile := filepath.Join(dir, "corp-ca.crt")
	if err := os.WriteFile(caFile, []byte("corp-ca"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, []byte("registries:\n- host: registry.corp.example:5000\n  caFile: "+caFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guardPath := manifests.GuardDir + "/" + manifests.GuardFile
	tests := []struct {
		name       string
		args       []string
		allowList  bool
		registries []string
		guard      bool
		stderr     []string
		quiet      []string
	}{
		{"hosts", []string{"--registry", "ghcr.io", "--registry", "quay.io,registry.k8s.io"},
			true, []string{"ghcr.io", "quay.io", "registry.k8s.io"}, true, nil, []string{"placeholder", "warning"}},
		{"config's hosts and one more", []string{"--config", cfgFile, "--registry", "ghcr.io"},
			true, []string{"registry.corp.example:5000", "ghcr.io"}, true, nil, []string{"warning"}},
		{"config's hosts alone", []string{"--config", cfgFile},
			true, []string{"registry.corp.example:5000"}, true, nil, []string{"warning"}},
		{"placeholder", []string{"--registry", manifests.PlaceholderRegistry},
			true, []string{manifests.PlaceholderRegistry}, true, []string{"registry.example.internal is a placeholder"}, []string{"warning"}},
		{"allow-list off", []string{"--registry-allow-list=false"},
			false, nil, true, []string{"warning: the registry allow-list is off"}, []string{"rollback"}},
		{"guard off", []string{"--registry", "ghcr.io", "--checkpoint-guard=false"},
			true, []string{"ghcr.io"}, false, []string{"warning: the rollback guard is off"}, []string{"allow-list"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, err := run(t, append([]string{"manifests", "--ca-file", ""}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			docs := named(t, out)
			var cfgMap struct{ Data map[string]string }
			if err := yaml.Unmarshal([]byte(docs["ConfigMap/stagegate-config"]), &cfgMap); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, []byte(cfgMap.Data[manifests.ConfigFile]), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("the server would refuse its config: %v", err)
			}
			var hosts []string
			for _, r := range cfg.Registries {
				hosts = append(hosts, r.Host)
			}
			if cfg.RegistryAllowList != tt.allowList || !slices.Equal(hosts, tt.registries) {
				t.Errorf("registryAllowList %v with %v, want %v with %v", cfg.RegistryAllowList, hosts, tt.allowList, tt.registries)
			}
			_, claim := docs["PersistentVolumeClaim/stagegate-guard"]
			mounted := strings.Contains(docs["Deployment/stagegate"], "mountPath: "+manifests.GuardDir+"\n")
			if claim != tt.guard || mounted != tt.guard || (cfg.Ledger.CheckpointFile == guardPath) != tt.guard {
				t.Errorf("guard claim %v, mounted %v, checkpointFile %q; want the guard %v", claim, mounted, cfg.Ledger.CheckpointFile, tt.guard)
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			for _, w := range tt.quiet {
				if strings.Contains(stderr, w) {
					t.Errorf("stderr holds %q:\n%s", w, stderr)
				}
			}
		})
	}
}

func TestManifestsCommandSafeDefaultsErrors(t *testing.T) {
	dir := t.TempDir()
	allowList := filepath.Join(dir, "allow-list.yaml")
	if err := os.WriteFile(allowList, []byte("registries:\n- host: ghcr.io\nregistryAllowList: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	guard := filepath.Join(dir, "guard.yaml")
	if err := os.WriteFile(guard, []byte("ledger:\n  checkpointFile: /srv/guard/checkpoint\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want error
		msg  string
	}{
		{"no host", nil, manifests.ErrNoRegistries, "--registry-allow-list=false"},
		{"host with a scheme", []string{"--registry", "https://ghcr.io"}, manifests.ErrInvalidOption, "host[:port]"},
		{"host twice", []string{"--registry", "ghcr.io", "--registry", "ghcr.io"}, manifests.ErrInvalidOption, "listed twice"},
		{"hosts with the allow-list off", []string{"--registry", "ghcr.io", "--registry-allow-list=false"}, manifests.ErrInvalidOption, "turned off"},
		{"allow-list off against the config", []string{"--config", allowList, "--registry-allow-list=false"}, manifests.ErrInvalidOption, "sets registryAllowList"},
		{"guard off against the config", []string{"--config", guard, "--registry", "ghcr.io", "--checkpoint-guard=false"}, manifests.ErrInvalidOption, "ledger.checkpointFile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := run(t, append([]string{"manifests", "--ca-file", ""}, tt.args...)...)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v, want %v naming %q", err, tt.want, tt.msg)
			}
		})
	}
}
