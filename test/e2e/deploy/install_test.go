package deploy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

const ns = "stagegate-system"

// stagegate runs the built binary in dir and fails t unless it succeeds.
func stagegate(t *testing.T, bin, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("stagegate %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

func kubectl(t *testing.T, api *framework.APIServer, args ...string) string {
	t.Helper()
	out, stderr, err := api.Kubectl(t, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	// Pod Security admission and deprecated fields answer with warnings,
	// which kubectl prints and would otherwise pass unnoticed.
	if strings.Contains(stderr, "Warning:") {
		t.Errorf("kubectl %s warned:\n%s", strings.Join(args, " "), stderr)
	}
	return out
}

// TestInstallThreeReplicas follows README's "Deploying three replicas":
// peer certificates, the manifests of three replicas, the peer Secrets,
// all applied with kubectl's server-side apply. The API server accepts
// every object without a warning, keeps what the issue asks of them, and
// admits a member's pod as the StatefulSet controller would create it
// under the namespace's restricted Pod Security level. Applying again
// changes nothing; the committed deploy/ha applies too, and so do five
// members with non-voters and, with continuous validation, its CRD and
// RBAC.
func TestInstallThreeReplicas(t *testing.T) {
	bin := framework.BuildBinary(t, "./cmd/stagegate")
	api := framework.StartAPIServer(t)
	cs := api.Clientset
	ctx := t.Context()
	work := t.TempDir()

	stagegate(t, bin, work, "certs", "generate")
	stagegate(t, bin, work, "certs", "generate", "--dir", "client-ca")
	stagegate(t, bin, work, "certs", "generate", "--peers", "stagegate-0,stagegate-1,stagegate-2")
	out := stagegate(t, bin, work, "manifests", "--replicas", "3", "--webhook-client-ca", "client-ca/ca.crt", "--registry", "ghcr.io")
	manifests := filepath.Join(work, "stagegate.yaml")
	if err := os.WriteFile(manifests, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	applied := kubectl(t, api, "apply", "--server-side", "-f", manifests)
	for _, want := range []string{
		"statefulset.apps/stagegate serverside-applied", "poddisruptionbudget.policy/stagegate serverside-applied",
		"networkpolicy.networking.k8s.io/stagegate-peers serverside-applied", "service/stagegate-peers serverside-applied",
		"service/stagegate serverside-applied", "validatingwebhookconfiguration.admissionregistration.k8s.io/stagegate serverside-applied",
	} {
		if !strings.Contains(applied, want) {
			t.Errorf("kubectl apply output lacks %q:\n%s", want, applied)
		}
	}
	for i := range 3 {
		id := fmt.Sprintf("stagegate-%d", i)
		kubectl(t, api, "-n", ns, "create", "secret", "generic", id+"-peer", "--from-file="+filepath.Join(work, "certs/peers", id)+"/")
	}

	sts, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "stagegate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *sts.Spec.Replicas != 3 || sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement ||
		sts.Spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || len(sts.Spec.VolumeClaimTemplates) != 2 {
		t.Errorf("stored StatefulSet: %d replicas, %s, %s, %d claim templates", *sts.Spec.Replicas,
			sts.Spec.PodManagementPolicy, sts.Spec.UpdateStrategy.Type, len(sts.Spec.VolumeClaimTemplates))
	}
	pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "stagegate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("stored PodDisruptionBudget: %+v", pdb.Spec)
	}
	np, err := cs.NetworkingV1().NetworkPolicies(ns).Get(ctx, "stagegate-peers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(np.Spec.Ingress) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != 8444 {
		t.Errorf("stored peer NetworkPolicy: %+v", np.Spec)
	}
	peers, err := cs.CoreV1().Services(ns).Get(ctx, "stagegate-peers", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses {
		t.Errorf("stored peers Service: %+v", peers.Spec)
	}
	secret, err := cs.CoreV1().Secrets(ns).Get(ctx, "stagegate-1-peer", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range secret.Data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"ca.crt", "tls.crt", "tls.key"}) {
		t.Errorf("the peer Secret holds %v", keys)
	}

	// What the StatefulSet controller would create for member 1: its
	// claims and its pod, which Pod Security admission checks against the
	// namespace's restricted level (the StatefulSet itself is not).
	pod, claims := memberPod(sts, 1)
	for _, c := range claims {
		if _, err := cs.CoreV1().PersistentVolumeClaims(ns).Create(ctx, c, metav1.CreateOptions{}); err != nil {
			t.Fatalf("claim %s: %v", c.Name, err)
		}
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("member pod: %v", err)
	}

	// Applying the same manifests again changes nothing.
	again := kubectl(t, api, "apply", "--server-side", "-f", manifests)
	if !strings.Contains(again, "statefulset.apps/stagegate serverside-applied") {
		t.Errorf("second apply:\n%s", again)
	}
	after, err := cs.AppsV1().StatefulSets(ns).Get(ctx, "stagegate", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != sts.ResourceVersion || after.Generation != sts.Generation {
		t.Errorf("re-applying changed the StatefulSet: resourceVersion %s -> %s, generation %d -> %d",
			sts.ResourceVersion, after.ResourceVersion, sts.Generation, after.Generation)
	}

	// The committed kustomize base of three replicas, and five members of
	// which two are non-voters, by dry run: the objects exist, with
	// another field manager's values.
	kubectl(t, api, "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-k", filepath.Join(framework.RepoRoot(t), "deploy/ha"))
	five := filepath.Join(work, "five.yaml")
	out = stagegate(t, bin, work, "manifests", "--replicas", "3", "--non-voters", "2", "--webhook-client-ca", "client-ca/ca.crt", "--registry", "ghcr.io")
	if err := os.WriteFile(five, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	if dry := kubectl(t, api, "apply", "--server-side", "--dry-run=server", "-f", five); !strings.Contains(dry, "statefulset.apps/stagegate serverside-applied (server dry run)") {
		t.Errorf("five members, dry run:\n%s", dry)
	}

	// With continuous validation, the members also get the PolicyReport
	// CRD and the RBAC it needs: applied for real, over the installation.
	cv := filepath.Join(work, "cv.yaml")
	if err := os.WriteFile(cv, []byte("continuousValidation:\n  enabled: true\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	withCV := filepath.Join(work, "with-cv.yaml")
	out = stagegate(t, bin, work, "manifests", "--replicas", "3", "--config", cv, "--webhook-client-ca", "client-ca/ca.crt", "--registry", "ghcr.io")
	if err := os.WriteFile(withCV, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	applied = kubectl(t, api, "apply", "--server-side", "-f", withCV)
	for _, want := range []string{
		"customresourcedefinition.apiextensions.k8s.io/policyreports.wgpolicyk8s.io serverside-applied",
		"clusterrole.rbac.authorization.k8s.io/stagegate-inventory serverside-applied",
		"clusterrolebinding.rbac.authorization.k8s.io/stagegate-inventory serverside-applied",
		"role.rbac.authorization.k8s.io/stagegate-inventory serverside-applied",
		"rolebinding.rbac.authorization.k8s.io/stagegate-inventory serverside-applied",
		"statefulset.apps/stagegate serverside-applied",
	} {
		if !strings.Contains(applied, want) {
			t.Errorf("kubectl apply (continuous validation) output lacks %q:\n%s", want, applied)
		}
	}
	if _, err := cs.RbacV1().Roles(ns).Get(ctx, "stagegate-inventory", metav1.GetOptions{}); err != nil {
		t.Errorf("the Lease's Role: %v", err)
	}
}

// memberPod is the pod and claims the StatefulSet controller makes for
// ordinal i: named <set>-<i>, with the pod-name label, the headless
// Service as its subdomain, and a claim per template named
// <template>-<pod>, mounted as the template's volume.
func memberPod(sts *appsv1.StatefulSet, i int) (*corev1.Pod, []*corev1.PersistentVolumeClaim) {
	name := fmt.Sprintf("%s-%d", sts.Name, i)
	tmpl := sts.Spec.Template.DeepCopy()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: sts.Namespace, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
		Spec:       tmpl.Spec,
	}
	pod.Labels[appsv1.StatefulSetPodNameLabel] = name
	pod.Spec.Hostname, pod.Spec.Subdomain = name, sts.Spec.ServiceName
	var claims []*corev1.PersistentVolumeClaim
	for _, ct := range sts.Spec.VolumeClaimTemplates {
		c := ct.DeepCopy()
		c.Name, c.Namespace = ct.Name+"-"+name, sts.Namespace
		claims = append(claims, c)
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: ct.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: c.Name},
		}})
	}
	return pod, claims
}
