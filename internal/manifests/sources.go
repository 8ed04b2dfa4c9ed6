package manifests

import (
	"slices"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stagegate/stagegate/internal/admission"
)

// sourcesObjects are what admission.sources needs: the least privilege to
// watch Flux's source objects, which say what chart a HelmChart or
// HelmRelease deploys, and to get one the informer's cache lacks. Read
// only; generated only when the config enables it.
func sourcesObjects(o Options) []runtime.Object {
	name := o.Service + "-sources"
	meta := metav1.ObjectMeta{Name: name, Labels: labels(o, "sources")}
	resources := make([]string, 0, len(admission.SourceKinds))
	for _, r := range admission.SourceKinds {
		resources = append(resources, r)
	}
	// Sorted: the same config gives the same manifests.
	slices.Sort(resources)
	return []runtime.Object{
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: meta,
			Rules: []rbacv1.PolicyRule{{APIGroups: []string{admission.FluxSourceGroup}, Resources: resources,
				Verbs: []string{"get", "list", "watch"}}},
		},
		&rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: meta,
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name},
			Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: o.Service, Namespace: o.Namespace}},
		},
	}
}
