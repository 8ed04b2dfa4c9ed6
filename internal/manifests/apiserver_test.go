package manifests

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

// TestAPIServer installs the generated objects into a real kube-apiserver
// (server-side validation, Pod Security admission at "restricted"), then
// checks that the API server routes pods to the entries it should: with
// no webhook server behind the Service, a routed request fails naming the
// entry, and one that is not routed succeeds.
func TestAPIServer(t *testing.T) {
	assets := filepath.Join(root, "bin/k8s")
	if _, err := os.Stat(filepath.Join(assets, "kube-apiserver")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s/kube-apiserver is missing (%v): run `make tools` before the tests", assets, err)
		}
		t.Skipf("%s/kube-apiserver is missing; run `make tools`", assets)
	}
	env := &envtest.Environment{BinaryAssetsDirectory: assets}
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

	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// Custom policies and a trusted key exercise the optional ConfigMaps.
	cfg.PolicyDir = filepath.Join(root, "policies")
	cfg.RegistrySource.TrustedKeys = []string{writeFile(t, "other.pub", testCA)}
	srv, err := ServerFiles(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Stages: cfg.StageNames(), ExcludeNamespaces: []string{"monitoring"}, Server: srv}
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

	for ns, stage := range map[string]string{"team-dev": "dev", "plain": "", "monitoring": "prod"} {
		n := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}
		if stage != "" {
			n.Labels = map[string]string{StageLabel: stage}
		}
		if err := c.Create(ctx, n); err != nil {
			t.Fatal(err)
		}
		// No controller-manager runs, so nobody creates the default
		// ServiceAccount that pods need.
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
		if err := c.Create(ctx, sa); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name      string
		namespace string
		podStage  string
		entry     string // the entry that must be called; "" if none
	}{
		{"namespace label", "team-dev", "", "namespace.dev.stagegate.dev"},
		{"pod label", "plain", "prod", "pod.prod.stagegate.dev"},
		{"pod label adds to the namespace's stage", "team-dev", "prod", ".stagegate.dev"},
		{"no label", "plain", "", ""},
		{"excluded namespace", "monitoring", "prod", ""},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "p" + string(rune('a'+i)), Namespace: tt.namespace},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.com/app@sha256:" + strings.Repeat("0", 64)}}},
			}
			if tt.podStage != "" {
				pod.Labels = map[string]string{StageLabel: tt.podStage}
			}
			err := c.Create(ctx, pod)
			switch {
			case tt.entry == "" && err != nil:
				t.Fatalf("pod not sent to any entry was refused: %v", err)
			case tt.entry != "" && err == nil:
				t.Fatalf("pod was admitted without calling %s", tt.entry)
			case tt.entry != "" && !strings.Contains(err.Error(), tt.entry):
				t.Fatalf("error %q does not name %s", err, tt.entry)
			}
		})
	}
}
