package manifests

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files and deploy/base from the current output")

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBdGVzdA==\n-----END CERTIFICATE-----\n"

func TestGolden(t *testing.T) {
	tests := []struct {
		name string
		objs func() []any
	}{
		{"webhook-service", func() []any {
			return []any{WebhookConfiguration(Options{
				Stages: []string{"dev", "test", "stage", "prod"}, CABundle: []byte(testCA),
			})}
		}},
		{"webhook-url-cluster", func() []any {
			return []any{WebhookConfiguration(Options{
				Stages: []string{"dev", "prod"}, URL: "https://127.0.0.1:8443/", CABundle: []byte(testCA),
				ClusterStage: "prod", TimeoutSeconds: 10, ExcludeNamespaces: []string{"monitoring", "kube-system"},
			})}
		}},
		{"install", func() []any {
			// A fixed Server, so that this file does not change with the
			// config package's defaults (TestDeployBase follows those).
			srv := &Server{
				Config:   []byte("listen: :8443\nstages:\n- name: dev\n- name: prod\n"),
				Policies: map[string]string{"admission.rego": "package stagegate.admission\n"},
				Trust:    map[string]string{"evidence-0-ci.pub": "-----BEGIN PUBLIC KEY-----\n...\n"},
			}
			return All(Options{Stages: []string{"dev", "prod"}, Namespace: "gate", Service: "sg",
				Image: "example.com/sg@sha256:" + strings.Repeat("a", 64), Server: srv})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tt.objs()...); err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", tt.name+".yaml"), buf.Bytes())
		})
	}
}

func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output; run `go test ./internal/manifests -update` and review the diff.\ngot:\n%s", path, got)
	}
}

// webhookName is what the API server accepts: a DNS subdomain of at least
// three segments.
var webhookName = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?){2,}$`)

func TestWebhookConfigurationStructure(t *testing.T) {
	tests := []struct {
		name     string
		o        Options
		entries  int
		excluded []string
	}{
		{
			name:     "defaults",
			o:        Options{Stages: []string{"dev", "test", "stage", "prod"}},
			entries:  8,
			excluded: []string{"kube-system", "kube-public", "kube-node-lease", DefaultNamespace},
		},
		{
			name:     "cluster stage and extra exclusions",
			o:        Options{Stages: []string{"dev", "prod"}, Namespace: "gate", ClusterStage: "prod", ExcludeNamespaces: []string{"monitoring"}},
			entries:  5,
			excluded: []string{"kube-system", "kube-public", "kube-node-lease", "gate", "monitoring"},
		},
		{
			name:     "url",
			o:        Options{Stages: []string{"one"}, URL: "https://127.0.0.1:8443"},
			entries:  2,
			excluded: []string{"kube-system", "kube-public", "kube-node-lease", DefaultNamespace},
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
			}
			for _, s := range tt.o.Stages {
				for _, kind := range []string{"namespace", "pod"} {
					if !seen[kind+"."+s+".stagegate.dev"] {
						t.Errorf("stage %q has no %s entry", s, kind)
					}
				}
			}
		})
	}
}

func checkEntry(t *testing.T, o Options, w admissionregistrationv1.ValidatingWebhook, kind, stage string, excluded []string) {
	t.Helper()
	path := "/admission/validate/" + stage
	switch {
	case o.URL != "":
		if w.ClientConfig.URL == nil || *w.ClientConfig.URL != strings.TrimSuffix(o.URL, "/")+path || w.ClientConfig.Service != nil {
			t.Errorf("%s: client config %+v, want url ending in %s", w.Name, w.ClientConfig, path)
		}
	default:
		svc := w.ClientConfig.Service
		if svc == nil || svc.Path == nil || *svc.Path != path || *svc.Port != 443 || w.ClientConfig.URL != nil {
			t.Errorf("%s: client config %+v, want service path %s port 443", w.Name, w.ClientConfig, path)
		}
	}
	if *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Errorf("%s: failurePolicy %s", w.Name, *w.FailurePolicy)
	}
	if *w.SideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun || *w.MatchPolicy != admissionregistrationv1.Equivalent {
		t.Errorf("%s: sideEffects %s matchPolicy %s", w.Name, *w.SideEffects, *w.MatchPolicy)
	}
	if !slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) {
		t.Errorf("%s: admissionReviewVersions %v", w.Name, w.AdmissionReviewVersions)
	}
	wantTimeout := o.TimeoutSeconds
	if wantTimeout == 0 {
		wantTimeout = DefaultTimeoutSeconds
	}
	if *w.TimeoutSeconds != wantTimeout {
		t.Errorf("%s: timeout %d, want %d", w.Name, *w.TimeoutSeconds, wantTimeout)
	}
	// Exclusions: every entry, whatever its kind.
	var exprs []metav1.LabelSelectorRequirement
	if w.NamespaceSelector != nil {
		exprs = w.NamespaceSelector.MatchExpressions
	}
	if len(exprs) != 1 || exprs[0].Key != "kubernetes.io/metadata.name" || exprs[0].Operator != metav1.LabelSelectorOpNotIn {
		t.Fatalf("%s: namespace exclusions %+v", w.Name, exprs)
	}
	for _, ns := range excluded {
		if !slices.Contains(exprs[0].Values, ns) {
			t.Errorf("%s: namespace %q not excluded (%v)", w.Name, ns, exprs[0].Values)
		}
	}
	if len(exprs[0].Values) != len(excluded) {
		t.Errorf("%s: excluded %v, want exactly %v", w.Name, exprs[0].Values, excluded)
	}
	want := map[string]string{StageLabel: stage}
	nsLabels, objLabels := w.NamespaceSelector.MatchLabels, map[string]string(nil)
	if w.ObjectSelector != nil {
		objLabels = w.ObjectSelector.MatchLabels
	}
	switch kind {
	case "namespace":
		if !mapsEqual(nsLabels, want) || w.ObjectSelector != nil {
			t.Errorf("%s: namespace labels %v object selector %v", w.Name, nsLabels, w.ObjectSelector)
		}
	case "pod":
		if !mapsEqual(objLabels, want) || len(nsLabels) != 0 {
			t.Errorf("%s: object labels %v namespace labels %v", w.Name, objLabels, nsLabels)
		}
	case "cluster":
		if stage != o.ClusterStage || len(nsLabels) != 0 || w.ObjectSelector != nil {
			t.Errorf("%s: cluster entry must have no label selector", w.Name)
		}
	default:
		t.Errorf("unexpected entry %q", w.Name)
	}
	var resources []string
	for _, r := range w.Rules {
		if !slices.Equal(r.Operations, []admissionregistrationv1.OperationType{"CREATE", "UPDATE"}) {
			t.Errorf("%s: operations %v", w.Name, r.Operations)
		}
		for _, res := range r.Resources {
			resources = append(resources, r.APIGroups[0]+"/"+res)
		}
	}
	for _, res := range []string{"/pods", "/pods/ephemeralcontainers", "/replicationcontrollers", "apps/deployments",
		"apps/replicasets", "apps/statefulsets", "apps/daemonsets", "batch/jobs", "batch/cronjobs"} {
		if !slices.Contains(resources, res) {
			t.Errorf("%s: %s not gated", w.Name, res)
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"ok", Options{Stages: []string{"dev", "prod"}, ClusterStage: "prod", URL: "https://127.0.0.1:8443"}, nil},
		{"no stages", Options{}, ErrNoStages},
		{"duplicate stage", Options{Stages: []string{"dev", "dev"}}, ErrInvalidOption},
		{"unknown cluster stage", Options{Stages: []string{"dev"}, ClusterStage: "prod"}, ErrUnknownStage},
		{"timeout too long", Options{Stages: []string{"dev"}, TimeoutSeconds: 31}, ErrInvalidOption},
		{"negative timeout", Options{Stages: []string{"dev"}, TimeoutSeconds: -1}, ErrInvalidOption},
		{"http url", Options{Stages: []string{"dev"}, URL: "http://127.0.0.1:8443"}, ErrInvalidOption},
		{"ca bundle", Options{Stages: []string{"dev"}, CABundle: []byte(testCA)}, nil},
		{"ca bundle without certificate", Options{Stages: []string{"dev"}, CABundle: []byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n")}, ErrInvalidOption},
		{"ca bundle not pem", Options{Stages: []string{"dev"}, CABundle: []byte("hello")}, ErrInvalidOption},
		{"url with query", Options{Stages: []string{"dev"}, URL: "https://h/?a=b"}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.o.Validate()
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Validate() = %v, want %v", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	dir := t.TempDir()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// testServerConfig is a validated config naming every kind of file
// ServerFiles packs.
func testServerConfig(t *testing.T) *config.Config {
	t.Helper()
	c := config.Default()
	c.Stages = []config.Stage{{Name: "dev", Mode: config.ModeWarn}, {Name: "prod"}}
	policies := filepath.Dir(writeFile(t, "promotion.rego", "package stagegate.promotion\n"))
	for name, content := range map[string]string{"promotion_test.rego": "package x\n", "README.md": "#\n"} {
		if err := os.WriteFile(filepath.Join(policies, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.PolicyDir = policies
	// Same base name twice: the ConfigMap keys must still differ.
	c.EvidenceKeys = []string{writeFile(t, "cosign.pub", "ci-key"), writeFile(t, "cosign.pub", "other-ci-key")}
	c.RegistrySource = config.RegistrySource{Enabled: true, TrustedKeys: []string{writeFile(t, "peer.pub", "peer-key")}}
	c.Registries = []config.Registry{{Host: "a.example"}, {Host: "b.example", CAFile: writeFile(t, "b ca.crt", "b-ca")}}
	c.TLS.ClientCAFile = writeFile(t, "clients.crt", "client-ca")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestServerFiles checks that the ConfigMap's config.yaml is one the
// server accepts, that it points at the Deployment's mounts, and that every
// file it names is carried along.
func TestServerFiles(t *testing.T) {
	in := testServerConfig(t)
	before, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ServerFiles(in)
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := yaml.Marshal(in); !bytes.Equal(before, after) {
		t.Errorf("ServerFiles modified its argument:\n%s", after)
	}
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, srv.Config, 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := got.Validate(); err != nil {
		t.Fatal(err)
	}
	checks := map[string][2]string{
		"listen":    {got.Listen, ":8443"},
		"dataDir":   {got.DataDir, DataDir},
		"certFile":  {got.TLS.CertFile, TLSDir + "/tls.crt"},
		"keyFile":   {got.TLS.KeyFile, TLSDir + "/tls.key"},
		"cosignKey": {got.Keys.CosignKey, KeysDir + "/cosign.key"},
		"logPub":    {got.Keys.LogPub, KeysDir + "/log.pub"},
		"tokens":    {got.TokensFile, TokensDir + "/tokens.yaml"},
		"policyDir": {got.PolicyDir, PoliciesDir},
		"stages":    {strings.Join(got.StageNames(), ","), "dev,prod"},
		"mode":      {got.Stages[0].Mode, config.ModeWarn},
		"registry0": {got.Registries[0].CAFile, ""},
	}
	for name, c := range checks {
		if c[0] != c[1] {
			t.Errorf("%s = %q, want %q", name, c[0], c[1])
		}
	}
	// Every trusted path must be in TrustDir and carry its file's content.
	trusted := map[string]string{
		got.TLS.ClientCAFile:              "client-ca",
		got.EvidenceKeys[0]:               "ci-key",
		got.EvidenceKeys[1]:               "other-ci-key",
		got.RegistrySource.TrustedKeys[0]: "peer-key",
		got.Registries[1].CAFile:          "b-ca",
	}
	if len(trusted) != 5 || len(srv.Trust) != 5 {
		t.Fatalf("trusted paths %v, files %v: want 5 distinct", trusted, srv.Trust)
	}
	for p, want := range trusted {
		dir, key := filepath.Split(p)
		if dir != TrustDir+"/" || srv.Trust[key] != want || configMapKey(key) != key {
			t.Errorf("%s: content %q, want %q in %s", p, srv.Trust[key], want, TrustDir)
		}
	}
	if len(srv.Policies) != 1 || srv.Policies["promotion.rego"] == "" {
		t.Errorf("policies %v, want only promotion.rego", srv.Policies)
	}
}

func TestServerFilesErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*config.Config)
		want   error
	}{
		{"missing key file", func(c *config.Config) { c.EvidenceKeys = []string{"/nonexistent/key.pub"} }, os.ErrNotExist},
		{"missing policy dir", func(c *config.Config) { c.PolicyDir = "/nonexistent" }, os.ErrNotExist},
		{"policy dir without policy", func(c *config.Config) { c.PolicyDir = t.TempDir() }, ErrInvalidOption},
		{"too large", func(c *config.Config) {
			c.EvidenceKeys = []string{writeFile(t, "big.pub", strings.Repeat("x", maxConfigMap+1))}
		}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			tt.modify(c)
			if _, err := ServerFiles(c); !errors.Is(err, tt.want) {
				t.Fatalf("ServerFiles() = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDeploymentMounts ties the Deployment to ServerFiles and the
// security requirements: every path the config names is mounted, and the
// pod runs restricted.
func TestDeploymentMounts(t *testing.T) {
	srv, err := ServerFiles(testServerConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	objs := Deployment(Options{Stages: []string{"dev"}, Server: srv})
	var d *appsv1.Deployment
	cms := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		switch o := o.(type) {
		case *appsv1.Deployment:
			d = o
		case *corev1.ConfigMap:
			cms[o.Name] = o
		}
	}
	cm := cms["stagegate-config"]
	if d == nil || cm == nil || cms["stagegate-policies"] == nil || cms["stagegate-trust"] == nil {
		t.Fatalf("missing Deployment or ConfigMaps in %T", objs)
	}
	if *d.Spec.Replicas != 1 || d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
		t.Errorf("replicas %d strategy %s, want 1 Recreate (bbolt is single-writer)", *d.Spec.Replicas, d.Spec.Strategy.Type)
	}
	var cfg config.Config
	if err := yaml.UnmarshalStrict([]byte(cm.Data[ConfigFile]), &cfg); err != nil {
		t.Fatal(err)
	}
	pod := d.Spec.Template.Spec
	c := pod.Containers[0]
	mounted := func(p string) bool {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(p, m.MountPath+"/") || p == m.MountPath {
				return true
			}
		}
		return false
	}
	paths := []string{cfg.DataDir, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.Keys.Dir,
		cfg.TokensFile, cfg.PolicyDir, cfg.EvidenceKeys[0], cfg.RegistrySource.TrustedKeys[0], c.Args[len(c.Args)-1]}
	for _, p := range paths {
		if !mounted(p) {
			t.Errorf("%s is not on a mounted volume", p)
		}
	}
	if ps := pod.SecurityContext; !*ps.RunAsNonRoot || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v", ps)
	}
	for _, c := range append(pod.InitContainers, pod.Containers...) {
		sc := c.SecurityContext
		if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("container %s: security context %+v", c.Name, sc)
		}
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Scheme != corev1.URISchemeHTTPS {
			t.Errorf("probe %+v, want HTTPS", p)
		}
	}
	// A different config must restart the pod.
	other := *srv
	other.Config = append([]byte("# changed\n"), srv.Config...)
	if h := d.Spec.Template.Annotations[ConfigHashAnnotation]; h == "" || h == other.hash() {
		t.Errorf("config hash %q does not follow the config", h)
	}
	if e := c.Env; len(e) != 1 || e[0].Name != config.PasswordEnv || e[0].ValueFrom.SecretKeyRef == nil {
		t.Errorf("env %+v, want %s from a Secret", e, config.PasswordEnv)
	}
}
