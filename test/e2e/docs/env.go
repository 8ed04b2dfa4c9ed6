package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// Identities the pages use: the pipeline promotes to dev and test, a
// release manager to the later stages, and the security team revokes (as
// the config files under examples/ give their groups).
const (
	pipelineSubject = "ci-pipeline"
	releaseSubject  = "release-manager"
	securitySubject = "security-team"
)

// images are what every environment's registry holds when a page starts,
// as the pages say: shop/app in two versions built from the
// organisation's repository, and shop/tool built elsewhere.
var images = map[string]string{
	"shop/app:1.0":  "https://github.com/example/shop",
	"shop/app:1.1":  "https://github.com/example/shop",
	"shop/tool:1.0": "https://github.com/someone-else/tool",
}

// envs start what a page names in its docs-test marker and return the
// variables its shell gets. Each takes the example's directory (which
// may be empty) and returns the environment for bash.
var envs = map[string]func(t *testing.T, example string) []string{
	"cluster":      clusterEnv,
	"two-clusters": twoClustersEnv,
	"registry":     registryEnv,
}

// clusterEnv is one cluster: a registry, an API server whose webhook
// configuration is what `stagegate manifests --webhook-only` prints, and
// one `stagegate serve` configured by the example's stagegate.yaml, where
// ${KUBECONFIG} is the API server's kubeconfig (for admission.sources).
func clusterEnv(t *testing.T, example string) []string {
	reg := framework.StartRegistry(t)
	seed(t, reg)
	webhookAddr := "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	auth := framework.NewWebhookClientAuth(t, webhookAddr)
	api := framework.StartAPIServer(t, framework.WithAdmissionConfig(auth.AdmissionConfig))
	sg := startServe(t, serveSpec{name: "docs", regs: []*framework.Registry{reg}, example: example,
		vars:        map[string]string{"REGISTRY": reg.Addr, "KUBECONFIG": api.KubeconfigPath},
		webhookAddr: webhookAddr, auth: auth})
	installWebhook(t, sg, api)
	installGitOpsCRDs(t, api)

	return append(baseEnv(t, sg),
		"REGISTRY="+reg.Addr,
		"KUBECONFIG="+api.KubeconfigPath,
	)
}

// twoClustersEnv is two clusters, "dev" and "prod" (contexts of one
// KUBECONFIG), whose webhooks both call one `stagegate serve`: one ledger
// for both. Both API servers present client certificates of one CA, the
// one serve's admission listener trusts.
func twoClustersEnv(t *testing.T, example string) []string {
	reg := framework.StartRegistry(t)
	seed(t, reg)
	sg, auth := oneServe(t, reg, example)
	dev := framework.StartAPIServer(t, framework.WithAdmissionConfig(auth.AdmissionConfig))
	prod := framework.StartAPIServer(t, framework.WithAdmissionConfig(auth.AdmissionConfig))
	installWebhook(t, sg, dev)
	installWebhook(t, sg, prod)
	return append(baseEnv(t, sg),
		"REGISTRY="+reg.Addr,
		"KUBECONFIG="+mergeKubeconfigs(t, map[string]*framework.APIServer{"dev": dev, "prod": prod}),
	)
}

// registryEnv is two clusters that share no stagegate: a promoter serves
// the dev cluster from promoter.yaml and copies what it promotes to prod,
// with its attestations, into a second registry; a follower serves the
// prod cluster from follower.yaml and learns promotions and revocations
// from that registry, trusting the promoter's cosign key.
func registryEnv(t *testing.T, example string) []string {
	reg, prodReg := framework.StartRegistry(t), framework.StartRegistry(t)
	seed(t, reg)
	both := []*framework.Registry{reg, prodReg}
	vars := map[string]string{"REGISTRY": reg.Addr, "PROD_REGISTRY": prodReg.Addr}

	addrA := "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	authA := framework.NewWebhookClientAuth(t, addrA)
	a := startServe(t, serveSpec{name: "promoter", regs: both, example: example, file: "promoter.yaml",
		vars: vars, webhookAddr: addrA, auth: authA})
	vars["PROMOTER_KEY"] = filepath.Join(a.KeysDir, "cosign.pub")
	addrB := "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	authB := framework.NewWebhookClientAuth(t, addrB)
	b := startServe(t, serveSpec{name: "follower", regs: both, example: example, file: "follower.yaml",
		vars: vars, webhookAddr: addrB, auth: authB})

	dev := framework.StartAPIServer(t, framework.WithAdmissionConfig(authA.AdmissionConfig))
	prod := framework.StartAPIServer(t, framework.WithAdmissionConfig(authB.AdmissionConfig))
	installWebhook(t, a, dev)
	installWebhook(t, b, prod)
	return append(baseEnv(t, a),
		"REGISTRY="+reg.Addr,
		"PROD_REGISTRY="+prodReg.Addr,
		"FOLLOWER_SERVER="+b.URL,
		"FOLLOWER_CA_FILE="+b.CAFile,
		"FOLLOWER_TOKEN="+b.Tokens[0],
		"KUBECONFIG="+mergeKubeconfigs(t, map[string]*framework.APIServer{"dev": dev, "prod": prod}),
	)
}

// mergeKubeconfigs writes one kubeconfig with a context per API server,
// named as given, as an operator's kubeconfig with several clusters.
func mergeKubeconfigs(t *testing.T, apis map[string]*framework.APIServer) string {
	merged := clientcmdapi.NewConfig()
	for name, api := range apis {
		c, err := clientcmd.LoadFromFile(api.KubeconfigPath)
		if err != nil {
			t.Fatal(err)
		}
		ctx := c.Contexts[c.CurrentContext]
		if ctx == nil {
			t.Fatalf("docs: %s: kubeconfig has no current context", api.KubeconfigPath)
		}
		merged.Clusters[name] = c.Clusters[ctx.Cluster]
		merged.AuthInfos[name] = c.AuthInfos[ctx.AuthInfo]
		merged.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	}
	merged.CurrentContext = "dev"
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*merged, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveSpec is one `stagegate serve` of an environment.
type serveSpec struct {
	name string
	// regs are plain-HTTP registries it may contact.
	regs []*framework.Registry
	// example and file name its config under examples/ (file defaults to
	// stagegate.yaml); ${NAME} in it is replaced from vars.
	example, file string
	vars          map[string]string
	webhookAddr   string
	auth          *framework.WebhookClientAuth
}

// startServe starts serve with the pipeline's and the release manager's
// tokens and the example's config over the generated one.
func startServe(t *testing.T, spec serveSpec) *framework.Stagegate {
	var regs strings.Builder
	regs.WriteString("registries:\n")
	for _, r := range spec.regs {
		fmt.Fprintf(&regs, "- {host: %q, insecure: true}\n", r.Addr)
	}
	opts := []framework.StagegateOption{
		framework.WithName(spec.name),
		framework.WithAdmissionListener(spec.webhookAddr, spec.auth.CAFile),
		framework.WithToken("", pipelineSubject, "pipeline"),
		framework.WithToken("", releaseSubject, "release"),
		framework.WithToken("", securitySubject, "security"),
		framework.WithConfig(regs.String()),
	}
	if cfg := readExampleConfig(t, spec.example, spec.file); cfg != "" {
		for k, v := range spec.vars {
			cfg = strings.ReplaceAll(cfg, "${"+k+"}", v)
		}
		opts = append(opts, framework.WithConfig(cfg))
	}
	if dir := examplePolicies(t, spec.example); dir != "" {
		opts = append(opts, framework.WithConfig(fmt.Sprintf("policyDir: %q\n", dir)))
	}
	return framework.StartStagegate(t, opts...)
}

// oneServe starts serve for the example's stagegate.yaml with its
// webhook listener, returning the credentials the API servers need.
func oneServe(t *testing.T, reg *framework.Registry, example string) (*framework.Stagegate, *framework.WebhookClientAuth) {
	webhookAddr := "127.0.0.1:" + strconv.Itoa(framework.FreePort(t))
	auth := framework.NewWebhookClientAuth(t, webhookAddr)
	sg := startServe(t, serveSpec{name: "docs", regs: []*framework.Registry{reg}, example: example,
		vars: map[string]string{"REGISTRY": reg.Addr}, webhookAddr: webhookAddr, auth: auth})
	return sg, auth
}

// baseEnv is what every page's shell gets: PATH with stagegate, kubectl,
// crane and cosign; the server and its CA; the pipeline's token as
// STAGEGATE_TOKEN, the release manager's as RELEASE_TOKEN and the
// security team's as SECURITY_TOKEN; and a HOME
// of its own.
func baseEnv(t *testing.T, sg *framework.Stagegate) []string {
	root := framework.RepoRoot(t)
	kubectl := framework.Tool(t, "k8s", "k8s", "kubectl")
	crane := framework.Tool(t, "crane", "crane")
	path := strings.Join([]string{filepath.Dir(sg.Bin), filepath.Dir(kubectl), filepath.Dir(crane), "/usr/local/bin", "/usr/bin", "/bin"}, ":")
	return []string{
		"PATH=" + path,
		"HOME=" + t.TempDir(),
		"LANG=C.UTF-8",
		"STAGEGATE_SERVER=" + sg.URL,
		"STAGEGATE_CA_FILE=" + sg.CAFile,
		"STAGEGATE_TOKEN=" + sg.Tokens[0],
		"RELEASE_TOKEN=" + sg.Tokens[1],
		"SECURITY_TOKEN=" + sg.Tokens[2],
		"STAGEGATE_KEYS=" + sg.KeysDir,
		"REPO=" + root,
	}
}

func readExampleConfig(t *testing.T, example, file string) string {
	if example == "" {
		return ""
	}
	if file == "" {
		file = "stagegate.yaml"
	}
	b, err := os.ReadFile(filepath.Join(framework.RepoRoot(t), example, file))
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// examplePolicies assembles the policy directory of an example that has a
// policies/ directory, as its page tells the reader to: the built-in
// policies (without their tests) and the example's own files. serve runs
// with it as policyDir; "" when the example has none.
func examplePolicies(t *testing.T, example string) string {
	if example == "" {
		return ""
	}
	root := framework.RepoRoot(t)
	own, err := filepath.Glob(filepath.Join(root, example, "policies", "*.rego"))
	if err != nil || len(own) == 0 {
		return ""
	}
	dir := t.TempDir()
	files := append([]string{filepath.Join(root, "policies", "promotion.rego"), filepath.Join(root, "policies", "admission.rego")}, own...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// installWebhook applies `stagegate manifests --webhook-only` for sg's
// config and waits until the API server asks the webhook.
func installWebhook(t *testing.T, sg *framework.Stagegate, api *framework.APIServer) {
	out := sg.MustRun(t, "manifests", "--config", sg.ConfigPath, "--url", sg.WebhookURL, "--ca-file", sg.CAFile, "--webhook-only")
	p := filepath.Join(t.TempDir(), "webhook.yaml")
	if err := os.WriteFile(p, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := api.Kubectl(t, "apply", "-f", p); err != nil {
		t.Fatalf("docs: apply the webhook configuration: %v\n%s", err, stderr)
	}
	// A namespace of the probe's own, so that the pages' namespaces are
	// theirs alone.
	if _, stderr, err := api.Kubectl(t, "create", "namespace", "docs-probe"); err != nil {
		t.Fatalf("docs: %v\n%s", err, stderr)
	}
	if _, stderr, err := api.Kubectl(t, "label", "namespace", "docs-probe", "stagegate.dev/stage=dev"); err != nil {
		t.Fatalf("docs: %v\n%s", err, stderr)
	}
	api.WaitForWebhook(t, func() error {
		_, stderr, err := api.Kubectl(t, "run", "probe", "-n", "docs-probe", "--dry-run=server",
			"--image=127.0.0.1:1/never/promoted@sha256:"+strings.Repeat("0", 64))
		if err != nil {
			return fmt.Errorf("%w: %s", err, stderr)
		}
		return nil
	}, "denied the request")
}

// installGitOpsCRDs creates the CRDs of Flux's OCIRepository,
// HelmRepository, HelmChart and HelmRelease and Argo CD's Application
// (from hack/tools.sh crds), as a cluster running them has.
func installGitOpsCRDs(t *testing.T, api *framework.APIServer) {
	dir := framework.Tool(t, "crds", "crds")
	for _, f := range []string{"source.toolkit.fluxcd.io_ocirepositories.yaml", "application-crd.yaml",
		"source.toolkit.fluxcd.io_helmrepositories.yaml", "source.toolkit.fluxcd.io_helmcharts.yaml", "helm.toolkit.fluxcd.io_helmreleases.yaml"} {
		if _, stderr, err := api.Kubectl(t, "create", "-f", filepath.Join(dir, f)); err != nil {
			t.Fatalf("docs: kubectl create %s: %v\n%s", f, err, stderr)
		}
	}
	for _, crd := range []string{"crd/ocirepositories.source.toolkit.fluxcd.io", "crd/applications.argoproj.io",
		"crd/helmrepositories.source.toolkit.fluxcd.io", "crd/helmcharts.source.toolkit.fluxcd.io", "crd/helmreleases.helm.toolkit.fluxcd.io"} {
		if _, stderr, err := api.Kubectl(t, "wait", "--for=condition=Established", "--timeout=60s", crd); err != nil {
			t.Fatalf("docs: %s not established: %v\n%s", crd, err, stderr)
		}
	}
}

// seed pushes images into reg, each a random image whose config carries
// the org.opencontainers.image.source label given.
func seed(t *testing.T, reg *framework.Registry) {
	for ref, source := range images {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg := cf.Config.DeepCopy()
		cfg.Labels = map[string]string{"org.opencontainers.image.source": source}
		if img, err = mutate.Config(img, *cfg); err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag(reg.Repo(ref), name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img, remote.WithTransport(reg.Transport())); err != nil {
			t.Fatalf("docs: push %s: %v", tag, err)
		}
	}
}
