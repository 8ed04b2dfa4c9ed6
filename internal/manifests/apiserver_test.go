package manifests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/config"
)

// warnings records the Warning headers of API responses, where Pod
// Security admission reports pod templates that break the namespace's level.
type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(code int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

// settle bounds the wait for the API server to act on a new admission
// object: webhook configurations and policies reach the admission chain
// through informers, a moment after they are stored.
const settle = 30 * time.Second

// eventually calls f until it returns nil or settle has passed, and
// returns its last error.
func eventually(f func() error) error {
	deadline := time.Now().Add(settle)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// routedTo reports whether err is the failed call to entry at path: with
// no webhook server behind the Service, every call fails, naming both
// (path "/admission/validate/prod" also matches a longer one, but stage
// names here are not prefixes of one another).
// An empty entry means "not routed": err must be nil.
func routedTo(err error, entry, path string) error {
	switch {
	case entry == "" && err != nil:
		return fmt.Errorf("request not sent to any entry was refused: %w", err)
	case entry != "" && err == nil:
		return fmt.Errorf("request was admitted without calling %s", entry)
	case entry != "" && (!strings.Contains(err.Error(), entry+`"`) || !strings.Contains(err.Error(), path)):
		return fmt.Errorf("error %q does not name %s at %s", err, entry, path)
	}
	return nil
}

const testImage = "example.com/app@sha256:0000000000000000000000000000000000000000000000000000000000000000"

func testPod(name, ns, stage string) *corev1.Pod {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: testImage}}},
	}
	if stage != "" {
		pod.Labels = map[string]string{StageLabel: stage}
	}
	return pod
}

// widget is a custom workload: a pod template in a kind stagegate was
// never told about.
func widget(name, ns string) *unstructured.Unstructured {
	w := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"name": name, "namespace": ns},
		"spec": map[string]any{"template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "c", "image": testImage}},
		}}},
	}}
	return w
}

// TestAPIServer installs the generated objects into a real kube-apiserver
// (server-side validation and CEL compilation, Pod Security admission at
// "restricted"), then checks what the API server does with them: where it
// routes requests (with no webhook server behind the Service, a routed
// request fails naming the entry, and one that is not routed succeeds),
// that --skip-resource takes a kind out, that the tag-pinning webhook is
// accepted and routed, and that the stage-label policy holds. The API
// server runs with deploy/apiserver's admission configuration: the
// generated objects (NetworkPolicy, apiserver-ca ConfigMap and ports
// included) install without a warning, and, last, a webhook server that
// requires the API server's client certificate is called through the
// generated Service and gets it.
func TestAPIServer(t *testing.T) {
	assets := filepath.Join(root, "bin/k8s")
	needTool(t, filepath.Join(assets, "kube-apiserver"))
	needTool(t, filepath.Join(assets, "etcd"))
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDInstallOptions:     envtest.CRDInstallOptions{Paths: []string{filepath.Join("testdata", "crds")}},
	}
	// The API server runs with deploy/apiserver's admission configuration,
	// which it refuses to start with if it cannot read it.
	auth := newWebhookAuth(t)
	auth.configure(env)
	rc, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	warn := &warnings{}
	rc.WarningHandler = warn
	c, err := client.New(rc, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Label values the API server refuses cannot be on any namespace, so
	// no entry needs to match them.
	bad := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "trailing-space", Labels: map[string]string{StageLabel: "prod "}}}
	if err := c.Create(ctx, bad); !apierrors.IsInvalid(err) {
		t.Fatalf("namespace labelled %q: %v, want Invalid", "prod ", err)
	}

	// Namespaces, their default ServiceAccounts (no controller-manager
	// creates them) and a running pod exist before admission is
	// installed: the webhook would route the ServiceAccounts too.
	namespaces := map[string]*string{
		"team-dev": ptr("dev"), "team-prod": ptr("prod"), "plain": nil, "monitoring": ptr("prod"),
		"capital": ptr("Prod"), "qa": ptr("qa"), "empty-value": ptr(""),
	}
	for ns, stage := range namespaces {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if stage != nil {
			n.Labels = map[string]string{StageLabel: *stage}
		}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	if err := c.Create(ctx, testPod("running", "team-dev", "")); err != nil {
		t.Fatal(err)
	}

	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Custom policies and a trusted key exercise the optional ConfigMaps.
	cfg.PolicyDir = filepath.Join(root, "policies")
	cfg.RegistrySource.TrustedKeys = []string{writeFile(t, "other.pub", testCA)}
	o := Options{
		Stages: cfg.StageNames(), ExcludeNamespaces: []string{"monitoring"},
		// The test's own client is in system:masters and labels namespaces.
		StageLabelGroups: []string{"system:masters", stageAdmins},
		// The generated apiserver-ca ConfigMap, and a NetworkPolicy with
		// peers of every kind.
		WebhookClientCA: auth.clientCA,
		APIServerCIDRs:  []string{"192.0.2.0/28", "2001:db8::/64"},
		APIServerPods:   []string{"kube-system/k8s-app=konnectivity-agent"},
		APIClientCIDRs:  []string{"198.51.100.0/24"},
		// The allow-list, and the rollback guard's claim, both default.
		Registries: []string{"registry.example.com"},
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if o.Server, err = ServerFiles(cfg, o); err != nil {
		t.Fatal(err)
	}
	for _, obj := range All(o) {
		if err := c.Create(ctx, obj.(client.Object)); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	warn.mu.Lock()
	if len(warn.msgs) > 0 {
		t.Errorf("the API server warned while installing: %q", warn.msgs)
	}
	warn.mu.Unlock()
	// Wait for the webhook configuration to reach the admission chain.
	if err := eventually(func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe", Namespace: "team-dev"}}
		return routedTo(c.Create(ctx, cm, client.DryRunAll), "namespace.dev.stagegate.dev", ValidatePath+"dev")
	}); err != nil {
		t.Fatal(err)
	}

	t.Run("routing", func(t *testing.T) { testRouting(t, c) })
	t.Run("ephemeral containers", func(t *testing.T) {
		cs, err := kubernetes.NewForConfig(rc)
		if err != nil {
			t.Fatal(err)
		}
		pod, err := cs.CoreV1().Pods("team-dev").Get(ctx, "running", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		pod.Spec.EphemeralContainers = append(pod.Spec.EphemeralContainers, corev1.EphemeralContainer{
			EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox:latest"},
		})
		_, err = cs.CoreV1().Pods("team-dev").UpdateEphemeralContainers(ctx, "running", pod, metav1.UpdateOptions{})
		if err := routedTo(err, "namespace.dev.stagegate.dev", ValidatePath+"dev"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stage label policy", func(t *testing.T) { testStageLabelPolicy(t, rc, c) })
	t.Run("validation", func(t *testing.T) { testServerValidation(t, c) })
	t.Run("network validation", func(t *testing.T) { testNetworkValidation(t, c, warn) })
	t.Run("skip resource", func(t *testing.T) {
		skip := o
		skip.SkipResources = []string{"widgets.example.com"}
		vwc := WebhookConfiguration(skip)
		cur := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(vwc), cur); err != nil {
			t.Fatal(err)
		}
		vwc.ResourceVersion = cur.ResourceVersion
		if err := c.Update(ctx, vwc); err != nil {
			t.Fatal(err)
		}
		// Dry runs, so that waiting creates nothing.
		if err := eventually(func() error {
			return routedTo(c.Create(ctx, widget("skipped", "team-dev"), client.DryRunAll), "", "")
		}); err != nil {
			t.Fatal(err)
		}
		for ns, entry := range map[string]string{"team-dev": "namespace.dev.stagegate.dev", "qa": "namespace.unknown-stage.stagegate.dev"} {
			if err := routedTo(c.Create(ctx, widget("skipped", ns)), "", ""); err != nil {
				t.Errorf("widget in %s: %v", ns, err)
			}
			path := ValidatePath + "dev"
			if ns == "qa" {
				path = UnknownStagePath
			}
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after-skip", Namespace: ns}}
			if err := routedTo(c.Create(ctx, cm), entry, path); err != nil {
				t.Errorf("configmap in %s, with widgets skipped: %v", ns, err)
			}
		}
	})
	t.Run("pin tags", func(t *testing.T) {
		pin := o
		pin.PinTags = []string{"prod"}
		if err := pin.Validate(); err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, MutatingWebhookConfiguration(pin)); err != nil {
			t.Fatal(err)
		}
		// Mutating webhooks run first, so a pinned pod fails at the
		// pinning entry; other stages and other kinds are not pinned.
		if err := eventually(func() error {
			return routedTo(c.Create(ctx, testPod("pinned", "team-prod", ""), client.DryRunAll),
				"namespace.prod.pin.stagegate.dev", MutatePath+"prod")
		}); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name        string
			obj         client.Object
			entry, path string
		}{
			{"pod label", testPod("pinned-label", "plain", "prod"), "pod.prod.pin.stagegate.dev", MutatePath + "prod"},
			{"stage not pinned", testPod("not-pinned", "team-dev", ""), "namespace.dev.stagegate.dev", ValidatePath + "dev"},
			{"template not pinned", deploymentIn("team-prod"), "namespace.prod.stagegate.dev", ValidatePath + "prod"},
			{"excluded namespace", testPod("excluded", "monitoring", "prod"), "", ""},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				if err := routedTo(c.Create(ctx, tt.obj), tt.entry, tt.path); err != nil {
					t.Fatal(err)
				}
			})
		}
	})
	// Last: it gives the Service an endpoint, so calls stop failing.
	t.Run("client certificate", func(t *testing.T) { testClientCertificate(t, c, auth, o) })
}

func deploymentIn(ns string) *appsv1.Deployment {
	labels := map[string]string{"app": "a"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "d", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       testPod("", "", "").Spec,
			},
		},
	}
}

// testRouting creates one object per case; names are unique per case so
// that those admitted do not collide.
func testRouting(t *testing.T, c client.Client) {
	ctx := context.Background()
	validate := func(s string) string { return ValidatePath + s }
	const unknownNS, unknownPod = "namespace.unknown-stage.stagegate.dev", "pod.unknown-stage.stagegate.dev"
	tests := []struct {
		name        string
		obj         func(name string) client.Object
		entry, path string // the entry that must be called; "" if none
	}{
		{"namespace label", func(n string) client.Object { return testPod(n, "team-dev", "") }, "namespace.dev.stagegate.dev", validate("dev")},
		{"pod label", func(n string) client.Object { return testPod(n, "plain", "prod") }, "pod.prod.stagegate.dev", validate("prod")},
		{"pod label adds to the namespace's stage", func(n string) client.Object { return testPod(n, "team-dev", "prod") }, ".stagegate.dev", ValidatePath},
		{"no label", func(n string) client.Object { return testPod(n, "plain", "") }, "", ""},
		{"excluded namespace", func(n string) client.Object { return testPod(n, "monitoring", "prod") }, "", ""},

		{"namespace labelled Prod", func(n string) client.Object { return testPod(n, "capital", "") }, unknownNS, UnknownStagePath},
		{"namespace labelled qa", func(n string) client.Object { return testPod(n, "qa", "") }, unknownNS, UnknownStagePath},
		{"namespace label empty", func(n string) client.Object { return testPod(n, "empty-value", "") }, unknownNS, UnknownStagePath},
		{"pod labelled qa", func(n string) client.Object { return testPod(n, "plain", "qa") }, unknownPod, UnknownStagePath},
		{"pod labelled Prod", func(n string) client.Object { return testPod(n, "plain", "Prod") }, unknownPod, UnknownStagePath},
		{"pod labelled qa in an excluded namespace", func(n string) client.Object { return testPod(n, "monitoring", "qa") }, "", ""},
		{"deployment in a namespace labelled qa", func(string) client.Object { return deploymentIn("qa") }, unknownNS, UnknownStagePath},

		{"configmap in an enforced namespace", func(n string) client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "team-dev"}}
		}, "namespace.dev.stagegate.dev", validate("dev")},
		{"configmap in an excluded namespace", func(n string) client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "monitoring"}}
		}, "", ""},
		{"configmap in an unlabelled namespace", func(n string) client.Object {
			return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "plain"}}
		}, "", ""},
		{"podtemplate", func(n string) client.Object {
			return &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "team-dev"},
				Template: corev1.PodTemplateSpec{Spec: testPod("", "", "").Spec}}
		}, "namespace.dev.stagegate.dev", validate("dev")},
		{"custom resource", func(n string) client.Object { return widget(n, "team-dev") }, "namespace.dev.stagegate.dev", validate("dev")},
		{"custom resource with a pod label", func(n string) client.Object {
			w := widget(n, "plain")
			w.SetLabels(map[string]string{StageLabel: "qa"})
			return w
		}, unknownPod, UnknownStagePath},

		// The podless built-ins the control plane writes all the time.
		{"event", func(n string) client.Object {
			return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "team-dev"},
				InvolvedObject: corev1.ObjectReference{Kind: "Pod", Name: "running", Namespace: "team-dev"}}
		}, "", ""},
		{"lease", func(n string) client.Object {
			return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "team-dev"}}
		}, "", ""},
		{"endpoints", func(n string) client.Object {
			return &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: n, Namespace: "team-dev"}}
		}, "", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Create(ctx, tt.obj(fmt.Sprintf("r%d", i)))
			if err := routedTo(err, tt.entry, tt.path); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// testServerValidation has the API server validate, by dry run, what
// other options generate: each object renamed, since the installed ones
// hold the names.
func testServerValidation(t *testing.T, c client.Client) {
	ctx := context.Background()
	tests := []struct {
		name string
		o    Options
	}{
		{"url, cluster stage, every stage pinned", Options{
			Stages: []string{"dev", "prod"}, URL: "https://127.0.0.1:8443/", CABundle: []byte(testCA), ClusterStage: "prod",
			PinTags: []string{AllStages}, TimeoutSeconds: 30, ExcludeNamespaces: []string{"monitoring"},
		}},
		{"skipped resources and groups", Options{
			Stages: []string{"one"}, SkipResources: []string{"widgets.example.com", "configmaps", "clonesets.apps.kruise.io"},
			StageLabelGroups: []string{"platform-admins", `odd "group" \ name`, "system:serviceaccounts:argocd"},
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.o.Validate(); err != nil {
				t.Fatal(err)
			}
			objs := Admission(tt.o)
			if len(objs) < 3 {
				t.Fatalf("%d admission objects", len(objs))
			}
			for _, obj := range objs {
				co := obj.(client.Object)
				co.SetName(fmt.Sprintf("%s-v%d", co.GetName(), i))
				if err := c.Create(ctx, co, client.DryRunAll); err != nil {
					t.Errorf("%T: %v", obj, err)
				}
			}
		})
	}
}
