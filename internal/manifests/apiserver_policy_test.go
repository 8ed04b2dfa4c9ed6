package manifests

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Groups of the impersonated users: tenants may edit namespaces but not
// their stage; stage admins may do both.
const (
	tenants     = "stagegate-test:tenants"
	stageAdmins = "stagegate-test:stage-admins"
)

// impersonate returns a client acting as user in group.
func impersonate(t *testing.T, rc *rest.Config, user, group string) client.Client {
	t.Helper()
	cfg := rest.CopyConfig(rc)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: []string{group}}
	c, err := client.New(cfg, client.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// testStageLabelPolicy checks the ValidatingAdmissionPolicy as two users
// whose RBAC lets both create and edit namespaces: only the admission
// policy tells them apart.
func testStageLabelPolicy(t *testing.T, rc *rest.Config, admin client.Client) {
	ctx := context.Background()
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "namespace-editor"},
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"namespaces", "namespaces/status", "namespaces/finalize"},
			Verbs:     []string{"get", "list", "create", "update", "patch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "namespace-editor"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: tenants},
			{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: stageAdmins},
		},
	}
	for _, obj := range []client.Object{role, binding} {
		if err := admin.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	alice := impersonate(t, rc, "alice", tenants)
	bob := impersonate(t, rc, "bob", stageAdmins)

	// The message names the label and every allowed group.
	wantMsg := fmt.Sprintf("only members of the groups system:masters, %s may add, change or remove the label %s", stageAdmins, StageLabel)
	refused := func(err error) error {
		if err == nil {
			return errors.New("allowed")
		}
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), wantMsg) || !strings.Contains(err.Error(), StageLabelPolicy) {
			return fmt.Errorf("error %q is not the policy's refusal", err)
		}
		return nil
	}
	labelled := func(name, stage string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{StageLabel: stage}}}
	}
	// The binding takes effect a moment after it is stored; a dry run
	// creates nothing while waiting.
	if err := eventually(func() error {
		return refused(alice.Create(ctx, labelled("alice-wait", "dev"), client.DryRunAll))
	}); err != nil {
		t.Fatalf("the policy never took effect: %v", err)
	}
	// Namespaces the cases start from, made by the admin.
	for _, ns := range []*corev1.Namespace{
		labelled("tenant-labelled", "dev"), labelled("admin-labelled", "dev"),
		{ObjectMeta: metav1.ObjectMeta{Name: "tenant-plain"}}, {ObjectMeta: metav1.ObjectMeta{Name: "admin-plain"}},
		labelled("status-labelled", "prod"),
	} {
		if err := admin.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	setLabel := func(c client.Client, ns, key string, value *string) error {
		v := "null"
		if value != nil {
			v = fmt.Sprintf("%q", *value)
		}
		patch := client.RawPatch(types.MergePatchType, fmt.Appendf(nil, `{"metadata":{"labels":{%q:%s}}}`, key, v))
		return c.Patch(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, patch)
	}
	updateLabel := func(c client.Client, ns, value string) error {
		n := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			return err
		}
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[StageLabel] = value
		return c.Update(ctx, n)
	}
	allowed := func(err error) error { return err }
	tests := []struct {
		name string
		do   func() error
		want func(error) error
	}{
		{"tenant creates a labelled namespace", func() error { return alice.Create(ctx, labelled("by-alice", "dev")) }, refused},
		{"tenant creates an unlabelled namespace", func() error {
			return alice.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "by-alice-plain"}})
		}, allowed},
		{"tenant adds the label", func() error { return setLabel(alice, "tenant-plain", StageLabel, ptr("prod")) }, refused},
		{"tenant adds the label by update", func() error { return updateLabel(alice, "tenant-plain", "prod") }, refused},
		{"tenant adds an empty label", func() error { return setLabel(alice, "tenant-plain", StageLabel, ptr("")) }, refused},
		{"tenant changes the label", func() error { return setLabel(alice, "tenant-labelled", StageLabel, ptr("prod")) }, refused},
		{"tenant removes the label", func() error { return setLabel(alice, "tenant-labelled", StageLabel, nil) }, refused},
		{"tenant changes the label through status", func() error {
			n := &corev1.Namespace{}
			if err := alice.Get(ctx, client.ObjectKey{Name: "status-labelled"}, n); err != nil {
				return err
			}
			n.Labels[StageLabel] = "dev"
			return alice.Status().Update(ctx, n)
		}, refused},
		{"tenant edits another label of a labelled namespace", func() error {
			return setLabel(alice, "tenant-labelled", "team", ptr("a"))
		}, allowed},
		{"tenant edits another label of an unlabelled namespace", func() error {
			return setLabel(alice, "tenant-plain", "team", ptr("a"))
		}, allowed},
		{"tenant rewrites the label unchanged", func() error { return updateLabel(alice, "tenant-labelled", "dev") }, allowed},

		{"admin creates a labelled namespace", func() error { return bob.Create(ctx, labelled("by-bob", "dev")) }, allowed},
		{"admin adds the label", func() error { return setLabel(bob, "admin-plain", StageLabel, ptr("prod")) }, allowed},
		{"admin changes the label", func() error { return setLabel(bob, "admin-labelled", StageLabel, ptr("prod")) }, allowed},
		{"admin removes the label", func() error { return setLabel(bob, "admin-labelled", StageLabel, nil) }, allowed},
		{"admin changes the label through status", func() error {
			n := &corev1.Namespace{}
			if err := bob.Get(ctx, client.ObjectKey{Name: "status-labelled"}, n); err != nil {
				return err
			}
			n.Labels[StageLabel] = "test"
			if err := bob.Status().Update(ctx, n); err != nil {
				return err
			}
			// Proof that the subresource moves labels, hence that the
			// policy must match it.
			if err := admin.Get(ctx, client.ObjectKey{Name: "status-labelled"}, n); err != nil {
				return err
			}
			if n.Labels[StageLabel] != "test" {
				return fmt.Errorf("label %q after the status update", n.Labels[StageLabel])
			}
			return nil
		}, allowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.want(tt.do()); err != nil {
				t.Fatal(err)
			}
		})
	}
	// What the refusals left, and what the allowed changes made.
	for ns, want := range map[string]*string{
		"tenant-labelled": ptr("dev"), "tenant-plain": nil, "status-labelled": ptr("test"),
		"admin-plain": ptr("prod"), "admin-labelled": nil,
	} {
		n := &corev1.Namespace{}
		if err := admin.Get(ctx, client.ObjectKey{Name: ns}, n); err != nil {
			t.Fatal(err)
		}
		got, has := n.Labels[StageLabel]
		if has != (want != nil) || (has && got != *want) {
			t.Errorf("namespace %s: stage label %q (present %v), want %v", ns, got, has, want)
		}
	}
}
