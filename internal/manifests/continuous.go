package manifests

import (
	_ "embed"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"
)

// policyReportCRD is the PolicyReport CRD (wgpolicyk8s.io/v1alpha2) that
// continuous validation writes; Kyverno installs the same one, and
// applying it again changes nothing.
//
//go:embed policyreport-crd.yaml
var policyReportCRD []byte

// PolicyReportCRD returns the PolicyReport CRD.
func PolicyReportCRD() (*apiextensionsv1.CustomResourceDefinition, error) {
	var crd apiextensionsv1.CustomResourceDefinition
	if err := yaml.UnmarshalStrict(policyReportCRD, &crd); err != nil {
		return nil, fmt.Errorf("manifests: PolicyReport CRD: %w", err)
	}
	return &crd, nil
}

// continuousObjects are what continuous validation needs besides the
// server's config: the CRD and the least privilege to watch what runs, and
// write reports, Events and its Lease. They are generated only when the
// config enables it: the webhook alone never calls the API server, and
// gets no token and no RBAC.
func continuousObjects(o Options) []runtime.Object {
	name := o.Service + "-inventory"
	var objs []runtime.Object
	if crd, err := PolicyReportCRD(); err == nil { // embedded, and tested
		objs = append(objs, crd)
	}
	subjects := []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: o.Service, Namespace: o.Namespace}}
	clusterMeta := metav1.ObjectMeta{Name: name, Labels: labels(o, "inventory")}
	rules := []rbacv1.PolicyRule{
		// The informers; the stage is the namespace's label.
		{APIGroups: []string{""}, Resources: []string{"pods", "namespaces"}, Verbs: []string{"list", "watch"}},
		// A pod's Deployment, through its ReplicaSet, gets the Event.
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
		// Server-side apply (patch), and removal when a
		// namespace loses its stage; list finds its own at start.
		{APIGroups: []string{"wgpolicyk8s.io"}, Resources: []string{"policyreports"}, Verbs: []string{"get", "list", "create", "patch", "delete"}},
		// The GitOps objects that deploy an OCI artifact
		// (inventory.GitOpsKinds), always: a rule on a resource that
		// is not served grants nothing, and the controller watches them
		// only once their CRD is installed, without a new rollout.
		{APIGroups: []string{"source.toolkit.fluxcd.io"}, Resources: []string{"ocirepositories"}, Verbs: []string{"list", "watch"}},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"applications"}, Verbs: []string{"list", "watch"}},
	}
	if o.Server != nil && o.Server.Evict {
		// Only through the Eviction API, which honours
		// PodDisruptionBudgets: no delete on pods.
		rules = append(rules, rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}})
	}
	return append(objs,
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: clusterMeta,
			Rules:      rules,
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: clusterMeta,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   subjects,
		},
		// The Lease that elects the one replica writing reports, in the
		// server's own namespace only.
		&rbacv1.Role{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "Role"},
			ObjectMeta: meta(o, name, "inventory"),
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
			},
		},
		&rbacv1.RoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "RoleBinding"},
			ObjectMeta: meta(o, name, "inventory"),
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: name},
			Subjects:   subjects,
		},
	)
}
