package framework

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// k8sTool is the hack/tools.sh name that builds bin/k8s.
const k8sTool = "k8s"

// APIServer is a kube-apiserver backed by etcd, both real binaries started by
// controller-runtime envtest from bin/k8s. There is no kubelet or controller
// manager: objects are stored and admitted, pods never run.
type APIServer struct {
	// Env is the envtest environment, for what this type does not wrap
	// (e.g. Env.WebhookInstallOptions.LocalServingHost).
	Env *envtest.Environment
	// Config is a cluster-admin (system:masters) client configuration.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file with the same credentials, for
	// kubectl and for binaries under test.
	KubeconfigPath string
	// Clientset talks to the API server as cluster-admin.
	Clientset kubernetes.Interface

	kubectl string
}

var setLoggerOnce sync.Once

// APIServerOption configures StartAPIServer.
type APIServerOption func(*apiServerOptions)

type apiServerOptions struct {
	admissionConfig string
}

// WithAdmissionConfig starts kube-apiserver with
// --admission-control-config-file=path, e.g. an AdmissionConfiguration
// whose WebhookAdmissionConfiguration kubeconfig gives the API server a
// client certificate for calling webhooks.
func WithAdmissionConfig(path string) APIServerOption {
	return func(o *apiServerOptions) { o.admissionConfig = path }
}

// StartAPIServer starts etcd and kube-apiserver and stops them when the test
// ends. Starting takes a few seconds; share one per test binary where the
// tests allow it.
func StartAPIServer(t testing.TB, opts ...APIServerOption) *APIServer {
	t.Helper()
	var o apiServerOptions
	for _, opt := range opts {
		opt(&o)
	}
	dir := Tool(t, k8sTool, "k8s")
	for _, name := range []string{"kube-apiserver", "etcd", "kubectl"} {
		Tool(t, k8sTool, "k8s", name)
	}

	// controller-runtime prints a stack trace when its logger is used but
	// never set; route it to slog, warnings and errors only.
	setLoggerOnce.Do(func() {
		ctrllog.SetLogger(logr.FromSlogHandler(slog.NewTextHandler(os.Stderr,
			&slog.HandlerOptions{Level: slog.LevelWarn})))
	})

	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		// The default 20 s is tight on a loaded 2-core CI machine.
		ControlPlaneStartTimeout: durationFromEnv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT", 90*time.Second),
		ControlPlaneStopTimeout:  durationFromEnv("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT", 30*time.Second),
	}
	// Keep the API server's output and show it only when the test fails:
	// it explains webhook call failures that the client sees as a bare
	// "failed calling webhook".
	out := process.NewOutput(maxOutput)
	api := env.ControlPlane.GetAPIServer()
	api.Out, api.Err = out, out
	if o.admissionConfig != "" {
		api.Configure().Append("admission-control-config-file", o.admissionConfig)
	}

	cfg, err := env.Start()
	if err != nil {
		// Start may have started etcd before failing.
		_ = env.Stop()
		t.Fatalf("framework: start API server: %v\n%s", err, out.Tail(8<<10))
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kube-apiserver output (tail):\n%s", out.Tail(16<<10))
		}
		if err := env.Stop(); err != nil {
			t.Errorf("framework: stop API server: %v", err)
		}
	})

	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	// It holds the admin client key.
	if err := os.WriteFile(kubeconfig, env.KubeConfig, 0o600); err != nil {
		t.Fatalf("framework: write kubeconfig: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("framework: clientset: %v", err)
	}
	return &APIServer{
		Env:            env,
		Config:         cfg,
		KubeconfigPath: kubeconfig,
		Clientset:      cs,
		kubectl:        filepath.Join(dir, "kubectl"),
	}
}

// Kubectl runs bin/k8s/kubectl against this API server. A non-zero exit is
// returned as an *exec.ExitError, not reported to t, so tests can assert on
// expected refusals (e.g. a webhook denial in stderr).
func (a *APIServer) Kubectl(t testing.TB, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, a.kubectl, append([]string{"--kubeconfig", a.KubeconfigPath}, args...)...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// WaitForWebhook calls create (a dry-run create of a probe object in a
// gated namespace) until the API server's refusal contains one of answers,
// i.e. until the API server asks the webhook: a webhook configuration
// reaches its admission chain asynchronously, and after a CA change it
// must trust the new certificate first. It fails t after a minute.
func (a *APIServer) WaitForWebhook(t testing.TB, create func() error, answers ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		err := create()
		for _, want := range answers {
			if err != nil && strings.Contains(err.Error(), want) {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("framework: the API server does not ask the webhook yet; last answer: %v", err)
		case <-tick.C:
		}
	}
}

func durationFromEnv(name string, def time.Duration) time.Duration {
	if v, ok := os.LookupEnv(name); ok {
		if d, err := time.ParseDuration(v); err == nil {
			return d
		}
	}
	return def
}

// maxOutput bounds the output kept of a long-running part; only its tail
// is ever shown.
const maxOutput = 1 << 20
