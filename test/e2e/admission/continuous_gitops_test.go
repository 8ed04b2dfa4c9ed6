package admission

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestContinuousValidationGitOps (issues 15 and 18): the GitOps objects
// that deploy an OCI artifact, a Flux OCIRepository and an Argo CD
// Application on the real CRDs, get the same continuous validation as
// pods: `stagegate status` names them where the artifact's digest is
// deployed, a revocation's answer lists them, their namespace's
// PolicyReport fails them naming the object, and promoting the digest
// again clears them. serve acts as the service account of the generated
// RBAC, and the sweep is an hour: only the revocation's observer can have
// told it in time.
func TestContinuousValidationGitOps(t *testing.T) {
	s := &suite{reg: framework.StartRegistry(t), api: framework.StartAPIServer(t)}
	s.installGitOpsCRDs(t)
	kubeconfig := asInventory(t, s.api)
	cfg := fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [e2e], minSoak: 0s}
- {name: test, groups: [e2e], minSoak: 0s}
continuousValidation:
  enabled: true
  kubeconfig: %s
  sweep: 1h
  lease: {namespace: default, duration: 6s, renew: 4s, retry: 1s}
`, s.reg.Addr, kubeconfig)
	s.serve = framework.StartStagegate(t,
		framework.WithName("continuous-gitops"),
		framework.WithToken("", "e2e-pipeline", "e2e"),
		framework.WithConfig(cfg))
	s.bin, s.dir, s.configPath, s.token, s.url = s.serve.Bin, s.serve.Dir, s.serve.ConfigPath, s.serve.Token, s.serve.URL
	dyn := s.dynamic(t)

	// An artifact that is no image, as `flux push artifact` makes.
	artifact := s.reg.PushArtifact(t, "e2e/cv-config:v1", []byte("kind: ConfigMap\n"))
	repo, digest, _ := strings.Cut(artifact, "@")
	s.promote(t, artifact, "dev", "test")
	flux := s.namespace(t, "cv-flux", "test")
	argocd := s.namespace(t, "cv-argocd", "") // the Application carries its stage
	objects := map[*unstructured.Unstructured]schema.GroupVersionResource{
		ociRepository(flux, "cfg", repo, map[string]any{"digest": digest}):                                                     ociRepositoryGVR,
		application(argocd, "shop", "test", map[string]any{"repoURL": "oci://" + repo, "targetRevision": digest, "path": "."}): applicationGVR,
	}
	for obj, gvr := range objects {
		if _, err := dyn.Resource(gvr).Namespace(obj.GetNamespace()).Create(t.Context(), obj, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create %s: %v", obj.GetKind(), err)
		}
	}

	t.Run("promoted objects pass", func(t *testing.T) {
		waitPolicyReport(t, dyn, flux, "pass=1 fail=0 []")
		waitPolicyReport(t, dyn, argocd, "pass=1 fail=0 []")
	})
	t.Run("status says which objects deploy it", func(t *testing.T) {
		waitRunning(t, s, digest, "cv-argocd/shop Application/shop test [sources[0]] cv-flux/cfg OCIRepository/cfg test [cfg] total=2")
		out := s.mustRun(t, s.client("status", artifact, "-o", "table")...)
		if !regexp.MustCompile(`(?m)^cv-flux\s+OCIRepository/cfg\s+OCIRepository/cfg\s+test\s+cfg$`).MatchString(out) {
			t.Errorf("stagegate status -o table does not list the OCIRepository:\n%s", out)
		}
	})
	t.Run("a revocation fails them, naming the objects", func(t *testing.T) {
		_, stderr, err := s.run(t, s.client("revoke", artifact, "--stage", "test", "--reason", "CVE-2026-0018", "-o", os.DevNull)...)
		if err != nil {
			t.Fatalf("stagegate revoke: %v\n%s", err, stderr)
		}
		if !strings.Contains(stderr, "running pods affected: 2\n") ||
			!regexp.MustCompile(`(?m)^cv-flux\s+OCIRepository/cfg\s+OCIRepository/cfg\s+test\s+cfg$`).MatchString(stderr) ||
			!regexp.MustCompile(`(?m)^cv-argocd\s+Application/shop\s+Application/shop\s+test\s+sources\[0\]$`).MatchString(stderr) {
			t.Errorf("stagegate revoke does not list the affected objects:\n%s", stderr)
		}
		es := s.ledgerEntries(t, 0)
		idx := es[len(es)-1].Index
		waitPolicyReport(t, dyn, flux, fmt.Sprintf("pass=0 fail=1 [cfg %s revoked %d]", digest, idx))
		waitPolicyReport(t, dyn, argocd, fmt.Sprintf("pass=0 fail=1 [shop %s revoked %d]", digest, idx))
		for ns, want := range map[string]string{
			flux:   "source.toolkit.fluxcd.io/v1 OCIRepository cfg",
			argocd: "argoproj.io/v1alpha1 Application shop",
		} {
			if got := reportResource(t, dyn, ns); got != want {
				t.Errorf("the PolicyReport of %s names %q, want %q", ns, got, want)
			}
		}
		waitReport(t, s, []string{"--stage", "test"}, fmt.Sprintf("cv-argocd/shop test revoked %s %d; cv-flux/cfg test revoked %s %d", digest, idx, digest, idx))
	})
	t.Run("promoting again clears them, and deleted none", func(t *testing.T) {
		s.mustRun(t, s.client("promote", artifact, "--stage", "test", "--reason", "CVE-2026-0018 does not apply", "--override-revocation", "-o", os.DevNull)...)
		waitPolicyReport(t, dyn, flux, "pass=1 fail=0 []")
		waitPolicyReport(t, dyn, argocd, "pass=1 fail=0 []")
		waitReport(t, s, nil, "")
		if _, err := dyn.Resource(ociRepositoryGVR).Namespace(flux).Get(t.Context(), "cfg", metav1.GetOptions{}); err != nil {
			t.Errorf("the OCIRepository is gone: %v", err)
		}
	})
}

// reportResource is "apiVersion kind name" of the first result's resource
// in ns's PolicyReport.
func reportResource(t *testing.T, dyn dynamic.Interface, ns string) string {
	t.Helper()
	var got string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(policyReports).Namespace(ns).Get(ctx, "stagegate", metav1.GetOptions{})
		if err != nil {
			return false, nil //nolint:nilerr // poll again
		}
		items, _, _ := unstructured.NestedSlice(u.Object, "results")
		if len(items) == 0 {
			return false, nil
		}
		rs, _, _ := unstructured.NestedSlice(items[0].(map[string]any), "resources")
		if len(rs) != 1 {
			return false, fmt.Errorf("%d resources in a result, want 1", len(rs))
		}
		r := rs[0].(map[string]any)
		got = fmt.Sprintf("%v %v %v", r["apiVersion"], r["kind"], r["name"])
		return true, nil
	})
	if err != nil {
		t.Fatalf("PolicyReport of %s: %v", ns, err)
	}
	return got
}
