package framework

import (
	"context"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// User is an identity the API server authenticates itself (a client
// certificate envtest issues), so that what a webhook sees in an
// AdmissionReview's userInfo is the API server's word, not the test's.
type User struct {
	Name   string
	Groups []string
	// Clientset acts as the user.
	Clientset kubernetes.Interface
}

// AddUser provisions a user of name in groups, makes the user
// cluster-admin by a ClusterRoleBinding of its own (the groups stay what
// the API server reports: the binding names the user; "edit" would be
// empty, since no controller manager aggregates it), and waits until the
// API server's RBAC cache lets the user create pods.
func (a *APIServer) AddUser(t testing.TB, name string, groups ...string) *User {
	t.Helper()
	au, err := a.Env.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatalf("framework: add user %s: %v", name, err)
	}
	cs, err := kubernetes.NewForConfig(au.Config())
	if err != nil {
		t.Fatalf("framework: clientset of %s: %v", name, err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "e2e-user-" + strings.ReplaceAll(name, ":", "-")},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}},
	}
	if _, err := a.Clientset.RbacV1().ClusterRoleBindings().Create(context.Background(), binding, metav1.CreateOptions{}); err != nil {
		t.Fatalf("framework: RBAC for %s: %v", name, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: "create", Resource: "pods", Namespace: "default"}}}
		got, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), ssar, metav1.CreateOptions{})
		if err == nil && got.Status.Allowed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("framework: %s may still not create pods after 30s: %v %+v", name, err, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return &User{Name: name, Groups: groups, Clientset: cs}
}
