package admission

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/manifests"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

var policyReports = schema.GroupVersionResource{Group: "wgpolicyk8s.io", Version: "v1alpha2", Resource: "policyreports"}

// TestContinuousValidation (issue 15): a `serve` with continuousValidation
// enabled, on a real API server with the PolicyReport CRD, reports a running
// pod whose digest `stagegate revoke` revoked, and clears it when the digest
// is promoted again. serve acts as the service account of the generated
// RBAC, so the test also shows that privilege is enough. It has an environment of its own, without the webhook,
// so that the admission scenarios see the serve they always saw. The sweep is
// an hour: only the promotion service's observer can have told it in time.
func TestContinuousValidation(t *testing.T) {
	s := &suite{reg: framework.StartRegistry(t), api: framework.StartAPIServer(t)}
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
		framework.WithName("continuous"),
		framework.WithToken("", "e2e-pipeline", "e2e"),
		framework.WithLogLevel("debug"),
		framework.WithConfig(cfg))
	s.bin, s.dir, s.configPath, s.token, s.url = s.serve.Bin, s.serve.Dir, s.serve.ConfigPath, s.serve.Token, s.serve.URL
	dyn, err := dynamic.NewForConfig(s.api.Config)
	if err != nil {
		t.Fatal(err)
	}

	ref := s.pushImage(t, "continuous")
	digest := digestOf(ref)
	s.promote(t, ref, "dev", "test")
	ns := s.namespace(t, "cv-test", "test")
	p, err := s.api.Clientset.CoreV1().Pods(ns).Create(t.Context(), pod(ns, "app", ref), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	p.Status.Phase = corev1.PodRunning
	if _, err := s.api.Clientset.CoreV1().Pods(ns).UpdateStatus(t.Context(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	t.Run("a promoted pod passes", func(t *testing.T) {
		waitPolicyReport(t, dyn, ns, "pass=1 fail=0 []")
		// Written by the holder of the Lease the config names.
		l, err := s.api.Clientset.CoordinationV1().Leases("default").Get(t.Context(), "stagegate-inventory", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			t.Fatalf("Lease default/stagegate-inventory: %v, %+v; want a holder", err, l)
		}
	})
	t.Run("a follower answers and writes nothing", func(t *testing.T) {
		// A second replica on the same cluster and Lease, with a ledger
		// of its own that has no promotion: what it would report differs
		// from the leader's report, so a write of its would show.
		f := &suite{reg: s.reg, api: s.api}
		f.serve = framework.StartStagegate(t,
			framework.WithName("follower"),
			framework.WithToken("", "e2e-pipeline", "e2e"),
			framework.WithConfig(cfg))
		f.bin, f.dir, f.configPath, f.token, f.url = f.serve.Bin, f.serve.Dir, f.serve.ConfigPath, f.serve.Token, f.serve.URL
		waitReport(t, f, nil, "cv-test/app test not promoted "+digest+" -")
		waitReport(t, s, nil, "")
		waitPolicyReport(t, dyn, ns, "pass=1 fail=0 []")
	})
	t.Run("status says where it runs", func(t *testing.T) {
		waitRunning(t, s, digest, "cv-test/app Pod/app test [app] total=1")
		out := s.mustRun(t, s.client("status", ref, "-o", "table")...)
		if !regexp.MustCompile(`(?m)^cv-test\s+app\s+Pod/app\s+test\s+app$`).MatchString(out) {
			t.Errorf("stagegate status -o table does not list the pod:\n%s", out)
		}
	})
	t.Run("a revocation fails it", func(t *testing.T) {
		_, stderr, err := s.run(t, s.client("revoke", ref, "--stage", "test", "--reason", "CVE-2026-0015", "-o", os.DevNull)...)
		if err != nil {
			t.Fatalf("stagegate revoke: %v\n%s", err, stderr)
		}
		// The pods it affects, in the answer, at once: no wait for an
		// evaluation.
		if !strings.Contains(stderr, "running pods affected: 1\n") || !regexp.MustCompile(`(?m)^cv-test\s+app\s+Pod/app\s+test\s+app$`).MatchString(stderr) {
			t.Errorf("stagegate revoke does not list the affected pod:\n%s", stderr)
		}
		es := s.ledgerEntries(t, 0)
		idx := es[len(es)-1].Index
		waitPolicyReport(t, dyn, ns, fmt.Sprintf("pass=0 fail=1 [app %s revoked %d]", digest, idx))
		waitReport(t, s, []string{"--stage", "test"}, fmt.Sprintf("cv-test/app test revoked %s %d", digest, idx))
		waitReport(t, s, []string{"--stage", "dev"}, "")
	})
	t.Run("promoting again clears it", func(t *testing.T) {
		// Revocations are sticky: putting the digest back is an override.
		s.mustRun(t, s.client("promote", ref, "--stage", "test", "--reason", "CVE-2026-0015 does not apply", "--override-revocation", "-o", os.DevNull)...)
		waitPolicyReport(t, dyn, ns, "pass=1 fail=0 []")
		waitReport(t, s, nil, "")
	})
}

// waitRunning polls `stagegate status DIGEST -o json` until its running
// pods read want ("ns/pod owner stage [containers] ... total=N"), for at
// most a minute: the inventory answers once it evaluated every namespace.
func waitRunning(t *testing.T, s *suite, digest, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, stderr, err := s.run(t, s.client("status", digest, "-o", "json")...)
		if err != nil {
			last = stderr
			return false, nil //nolint:nilerr // poll again
		}
		var v struct {
			Running []struct {
				Namespace, Name, Owner, Stage string
				Containers                    []string
			} `json:"running"`
			RunningTotal   int    `json:"runningTotal"`
			RunningUnknown string `json:"runningUnknown"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return false, err
		}
		last = v.RunningUnknown
		for _, p := range v.Running {
			last += fmt.Sprintf("%s/%s %s %s %v ", p.Namespace, p.Name, p.Owner, p.Stage, p.Containers)
		}
		last += fmt.Sprint("total=", v.RunningTotal)
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("where %s runs: %v\n got %s\nwant %s", digest, err, last, want)
	}
}

// waitReport polls `stagegate report -o json` with args until it reads
// want ("ns/pod stage reason digest ledgerIndex; ..."), for at most a
// minute.
func waitReport(t *testing.T, s *suite, args []string, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		out, stderr, err := s.run(t, s.client(append([]string{"report", "-o", "json"}, args...)...)...)
		if err != nil {
			last = stderr
			return false, nil //nolint:nilerr // poll again
		}
		var v struct {
			Violations []struct {
				Namespace, Pod, Stage, Reason, Digest string
				LedgerIndex                           *uint64
			} `json:"violations"`
		}
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			return false, err
		}
		var rows []string
		for _, x := range v.Violations {
			idx := "-"
			if x.LedgerIndex != nil {
				idx = fmt.Sprint(*x.LedgerIndex)
			}
			rows = append(rows, fmt.Sprintf("%s/%s %s %s %s %s", x.Namespace, x.Pod, x.Stage, x.Reason, x.Digest, idx))
		}
		last = strings.Join(rows, "; ")
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("stagegate report %v: %v\n got %s\nwant %s", args, err, last, want)
	}
}

// asInventory creates what `stagegate manifests` generates for continuous
// validation (the PolicyReport CRD and the RBAC of the service account
// default/stagegate) and returns a kubeconfig that acts as that service
// account: serve then has the least privilege it ships with, no more.
func asInventory(t *testing.T, api *framework.APIServer, mutate ...func(*config.Config)) string {
	t.Helper()
	cfg := config.Default()
	cfg.ContinuousValidation.Enabled = true
	for _, m := range mutate {
		m(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	o := manifests.Options{Namespace: "default", Service: "stagegate", Registries: []string{manifests.PlaceholderRegistry}}
	srv, err := manifests.ServerFiles(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	o.Server = srv
	c, err := client.New(api.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := apiextensionsv1.AddToScheme(c.Scheme()); err != nil {
		t.Fatal(err)
	}
	var crd *apiextensionsv1.CustomResourceDefinition
	for _, obj := range manifests.Deployment(o) {
		switch v := obj.(type) {
		case *apiextensionsv1.CustomResourceDefinition:
			crd = v
		case *rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding, *rbacv1.Role, *rbacv1.RoleBinding:
		default:
			continue
		}
		if err := c.Create(t.Context(), obj.(client.Object)); err != nil {
			t.Fatalf("create %T: %v", obj, err)
		}
	}
	if crd == nil {
		t.Fatal("manifests generated no PolicyReport CRD")
	}
	if err := envtest.WaitForCRDs(api.Config, []*apiextensionsv1.CustomResourceDefinition{crd}, envtest.CRDInstallOptions{PollInterval: 100 * time.Millisecond, MaxTime: time.Minute}); err != nil {
		t.Fatalf("PolicyReport CRD: %v", err)
	}
	kc, err := clientcmd.LoadFromFile(api.KubeconfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.Impersonate = "system:serviceaccount:default:stagegate"
	}
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, p); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitPolicyReport polls the PolicyReport of ns, for at most a minute,
// until its summary and results read want: "pass=P fail=F [pod digest
// reason ledgerIndex ...]".
func waitPolicyReport(t *testing.T, dyn dynamic.Interface, ns, want string) {
	t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		u, err := dyn.Resource(policyReports).Namespace(ns).Get(ctx, "stagegate", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil //nolint:nilerr // not written yet: poll again
		}
		last = readPolicyReport(u)
		return last == want, nil
	})
	if err != nil {
		t.Fatalf("PolicyReport of %s: %v\n got %s\nwant %s", ns, err, last, want)
	}
}

// readPolicyReport renders a report as waitPolicyReport compares it.
func readPolicyReport(u *unstructured.Unstructured) string {
	pass, _, _ := unstructured.NestedInt64(u.Object, "summary", "pass")
	fail, _, _ := unstructured.NestedInt64(u.Object, "summary", "fail")
	items, _, _ := unstructured.NestedSlice(u.Object, "results")
	var results []string
	for _, it := range items {
		m, _ := it.(map[string]any)
		res, _, _ := unstructured.NestedString(m, "result")
		props, _, _ := unstructured.NestedStringMap(m, "properties")
		var pods []string
		rs, _, _ := unstructured.NestedSlice(m, "resources")
		for _, r := range rs {
			name, _, _ := unstructured.NestedString(r.(map[string]any), "name")
			pods = append(pods, name)
		}
		if res != "fail" {
			pods = append(pods, "result="+res)
		}
		results = append(results, strings.Join(pods, ",")+" "+props["digest"]+" "+props["reason"]+" "+props["ledgerIndex"])
	}
	return fmt.Sprintf("pass=%d fail=%d [%s]", pass, fail, strings.Join(results, "; "))
}
