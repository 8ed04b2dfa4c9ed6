package manifests

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
	goldenfile "github.com/stagegate/stagegate/internal/testutil/golden"
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
		{"admission-pin-skip", func() []any {
			return Admission(Options{
				Stages: []string{"dev", "prod"}, CABundle: []byte(testCA), PinTags: []string{"prod"},
				SkipResources:    []string{"widgets.example.com", "configmaps"},
				StageLabelGroups: []string{"system:masters", "platform-admins"},
			})
		}},
		{"install", func() []any {
			// A fixed Server, so that this file does not change with the
			// config package's defaults (TestDeployBase follows those).
			srv := &Server{
				Config: []byte("admission:\n  clientCAFile: /etc/stagegate-apiserver-ca/ca.crt\n  listen: :9443\n" +
					"ledger:\n  checkpointFile: /var/lib/stagegate-guard/checkpoint\n" +
					"listen: :8443\nregistries:\n- host: registry.example.com\nregistryAllowList: true\n" +
					"stages:\n- name: dev\n- name: prod\n"),
				Policies:   map[string]string{"admission.rego": "package stagegate.admission\n"},
				Trust:      map[string]string{"evidence-0-ci.pub": "-----BEGIN PUBLIC KEY-----\n...\n"},
				ClientAuth: true,
				ClientCA:   testCA,
				Guard:      true,
			}
			return All(Options{Stages: []string{"dev", "prod"}, Namespace: "gate", Service: "sg",
				Image: "example.com/sg@sha256:" + strings.Repeat("a", 64), Server: srv,
				APIServerCIDRs: []string{"192.0.2.0/28"}, APIServerPods: []string{"kube-system/k8s-app=konnectivity-agent"},
				APIClientNamespaces: "stagegate.dev/api-client=true", APIClientCIDRs: []string{"203.0.113.0/24"}})
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
	goldenfile.Assert(t, path, got, *update)
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
		{"empty stage", Options{Stages: []string{"dev", ""}}, ErrInvalidOption},
		{"stage not a label value", Options{Stages: []string{"Prod"}}, ErrInvalidOption},
		{"stage named like the unknown-stage entries", Options{Stages: []string{"dev", "unknown-stage"}}, ErrInvalidOption},

		{"skip custom and core resources", Options{Stages: []string{"dev"}, SkipResources: []string{"widgets.example.com", "configmaps", "events"}}, nil},
		{"skip a kind, not a resource", Options{Stages: []string{"dev"}, SkipResources: []string{"Widget.example.com"}}, ErrInvalidOption},
		{"skip a bad group", Options{Stages: []string{"dev"}, SkipResources: []string{"widgets.example..com"}}, ErrInvalidOption},
		{"skip empty", Options{Stages: []string{"dev"}, SkipResources: []string{""}}, ErrInvalidOption},
		{"skip wildcard", Options{Stages: []string{"dev"}, SkipResources: []string{"*"}}, ErrInvalidOption},
		{"skip a subresource", Options{Stages: []string{"dev"}, SkipResources: []string{"pods/ephemeralcontainers"}}, ErrInvalidOption},
		{"skip pods", Options{Stages: []string{"dev"}, SkipResources: []string{"pods"}}, ErrInvalidOption},
		{"skip deployments", Options{Stages: []string{"dev"}, SkipResources: []string{"deployments.apps"}}, ErrInvalidOption},

		{"stage label groups", Options{Stages: []string{"dev"}, StageLabelGroups: []string{"system:masters", "oidc:platform admins"}}, nil},
		{"empty stage label group", Options{Stages: []string{"dev"}, StageLabelGroups: []string{"a", " "}}, ErrInvalidOption},
		{"stage label group with a newline", Options{Stages: []string{"dev"}, StageLabelGroups: []string{"a\nb"}}, ErrInvalidOption},
		{"stage label group twice", Options{Stages: []string{"dev"}, StageLabelGroups: []string{"a", "a"}}, ErrInvalidOption},

		{"pin some stages", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"prod"}}, nil},
		{"pin every stage", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"*"}}, nil},
		{"pin an unknown stage", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"qa"}}, ErrUnknownStage},
		{"pin a stage twice", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"prod", "prod"}}, ErrInvalidOption},
		{"pin every stage and one", Options{Stages: []string{"dev", "prod"}, PinTags: []string{"*", "prod"}}, ErrInvalidOption},

		{"webhook client CA", Options{Stages: []string{"dev"}, WebhookClientCA: []byte(testCA)}, nil},
		{"webhook client CA not pem", Options{Stages: []string{"dev"}, WebhookClientCA: []byte("hello")}, ErrInvalidOption},
		{"webhook client CA empty file", Options{Stages: []string{"dev"}, WebhookClientCA: []byte{}}, ErrInvalidOption},
		{"webhook client CA with client auth off", Options{Stages: []string{"dev"}, WebhookClientCA: []byte(testCA), NoWebhookClientAuth: true, APIServerCIDRs: []string{"10.0.0.0/8"}}, ErrInvalidOption},
		{"client auth off without peers", Options{Stages: []string{"dev"}, NoWebhookClientAuth: true}, ErrInvalidOption},
		{"client auth off with a cidr", Options{Stages: []string{"dev"}, NoWebhookClientAuth: true, APIServerCIDRs: []string{"172.16.0.0/28"}}, nil},
		{"client auth off with pods", Options{Stages: []string{"dev"}, NoWebhookClientAuth: true, APIServerPods: []string{"kube-system/k8s-app=konnectivity-agent"}}, nil},
		{"apiserver cidrs", Options{Stages: []string{"dev"}, APIServerCIDRs: []string{"192.0.2.0/24", "192.0.2.9/32", "2001:db8::/64", "0.0.0.0/0"}}, nil},
		{"apiserver cidr with host bits", Options{Stages: []string{"dev"}, APIServerCIDRs: []string{"192.0.2.9/24"}}, ErrInvalidOption},
		{"apiserver cidr without length", Options{Stages: []string{"dev"}, APIServerCIDRs: []string{"192.0.2.9"}}, ErrInvalidOption},
		{"apiserver cidr empty", Options{Stages: []string{"dev"}, APIServerCIDRs: []string{""}}, ErrInvalidOption},
		{"apiserver cidr a name", Options{Stages: []string{"dev"}, APIServerCIDRs: []string{"control-plane/24"}}, ErrInvalidOption},
		{"api client cidr with host bits", Options{Stages: []string{"dev"}, APIClientCIDRs: []string{"2001:db8::1/64"}}, ErrInvalidOption},
		{"apiserver pods, whole namespace", Options{Stages: []string{"dev"}, APIServerPods: []string{"kube-system"}}, nil},
		{"apiserver pods, set selector", Options{Stages: []string{"dev"}, APIServerPods: []string{"kube-system/tier in (control-plane),app"}}, nil},
		{"apiserver pods, bad namespace", Options{Stages: []string{"dev"}, APIServerPods: []string{"Kube-System/app=x"}}, ErrInvalidOption},
		{"apiserver pods, empty", Options{Stages: []string{"dev"}, APIServerPods: []string{""}}, ErrInvalidOption},
		{"apiserver pods, bad selector", Options{Stages: []string{"dev"}, APIServerPods: []string{"kube-system/app in x"}}, ErrInvalidOption},
		{"api client namespaces", Options{Stages: []string{"dev"}, APIClientNamespaces: "team in (ci,release)"}, nil},
		{"registries", Options{Stages: []string{"dev"}, Registries: []string{"ghcr.io", "registry.corp.example:5000", "[2001:db8::1]:5000"}}, nil},
		{"registry with a scheme", Options{Stages: []string{"dev"}, Registries: []string{"https://ghcr.io"}}, ErrInvalidOption},
		{"registry with a path", Options{Stages: []string{"dev"}, Registries: []string{"ghcr.io/team"}}, ErrInvalidOption},
		{"registry with a user", Options{Stages: []string{"dev"}, Registries: []string{"me@ghcr.io"}}, ErrInvalidOption},
		{"registry empty", Options{Stages: []string{"dev"}, Registries: []string{""}}, ErrInvalidOption},
		{"registry twice", Options{Stages: []string{"dev"}, Registries: []string{"ghcr.io", "ghcr.io"}}, ErrInvalidOption},
		{"registries with the allow-list off", Options{Stages: []string{"dev"}, Registries: []string{"ghcr.io"}, NoRegistryAllowList: true}, ErrInvalidOption},
		{"allow-list off", Options{Stages: []string{"dev"}, NoRegistryAllowList: true}, nil},
		{"guard off", Options{Stages: []string{"dev"}, NoCheckpointGuard: true}, nil},
		{"api client namespaces, bad selector", Options{Stages: []string{"dev"}, APIClientNamespaces: "team in ci"}, ErrInvalidOption},
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
	c.RegistrySource = config.RegistrySource{Enabled: true, TrustedKeys: []string{writeFile(t, "peer.pub", "peer-key")},
		RevocationLists: []string{"a.example/stagegate/revocations:latest"}}
	c.Registries = []config.Registry{{Host: "a.example"}, {Host: "b.example", CAFile: writeFile(t, "b ca.crt", "b-ca")}}
	c.TLS.ClientCAFile = writeFile(t, "clients.crt", "client-ca")
	c.Admission.Listen = "127.0.0.1:9443"
	c.Admission.ClientCAFile = writeFile(t, "apiserver-ca.crt", testCA)
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
	srv, err := ServerFiles(in, Options{})
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
		"webhook":   {got.Admission.Listen, ":9443"},
		"webhookCA": {got.Admission.ClientCAFile, APIServerCADir + "/ca.crt"},
		"clientCA":  {srv.ClientCA, testCA},
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
		o      Options
		want   error
	}{
		{"missing key file", func(c *config.Config) { c.EvidenceKeys = []string{"/nonexistent/key.pub"} }, Options{}, os.ErrNotExist},
		{"missing policy dir", func(c *config.Config) { c.PolicyDir = "/nonexistent" }, Options{}, os.ErrNotExist},
		{"policy dir without policy", func(c *config.Config) { c.PolicyDir = t.TempDir() }, Options{}, ErrInvalidOption},
		{"too large", func(c *config.Config) {
			c.EvidenceKeys = []string{writeFile(t, "big.pub", strings.Repeat("x", maxConfigMap+1))}
		}, Options{}, ErrInvalidOption},
		{"missing webhook client CA", func(c *config.Config) { c.Admission.ClientCAFile = "/nonexistent/ca.crt" }, Options{}, os.ErrNotExist},
		{"webhook client CA not PEM", func(c *config.Config) { c.Admission.ClientCAFile = writeFile(t, "ca.crt", "hello") }, Options{}, ErrInvalidOption},
		{"webhook client CA too large", func(c *config.Config) {}, Options{WebhookClientCA: []byte(testCA + strings.Repeat("x", maxConfigMap))}, ErrInvalidOption},
		{"config asks for the certificate the options turn off", func(c *config.Config) { c.Admission.ClientCAFile = writeFile(t, "ca.crt", testCA) },
			Options{NoWebhookClientAuth: true, APIServerCIDRs: []string{"10.0.0.0/8"}}, ErrInvalidOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.Registries = []config.Registry{{Host: "registry.example.com"}}
			tt.modify(c)
			if _, err := ServerFiles(c, tt.o); !errors.Is(err, tt.want) {
				t.Fatalf("ServerFiles() = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestDeploymentMounts ties the Deployment to ServerFiles and the
// security requirements: every path the config names is mounted, and the
// pod runs restricted.
func TestDeploymentMounts(t *testing.T) {
	srv, err := ServerFiles(testServerConfig(t), Options{})
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
	paths := []string{cfg.DataDir, cfg.TLS.CertFile, cfg.TLS.KeyFile, cfg.TLS.ClientCAFile, cfg.Admission.ClientCAFile, cfg.Keys.Dir,
		cfg.TokensFile, cfg.PolicyDir, cfg.EvidenceKeys[0], cfg.RegistrySource.TrustedKeys[0], c.Args[len(c.Args)-1],
		cfg.Ledger.CheckpointFile}
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
