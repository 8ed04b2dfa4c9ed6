package manifests

import (
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/stagegate/stagegate/internal/config"
)

// TestSourcesObjects: with admission.sources on, the installation grants
// read access (get, list, watch) to Flux's source objects, and nothing
// else, through a ClusterRole of its own; the pod gets its token and the
// server's config points at the cluster it runs in. With it off, none.
func TestSourcesObjects(t *testing.T) {
	for name, enabled := range map[string]bool{"enabled": true, "disabled": false} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Admission.Sources = config.AdmissionSources{Enabled: enabled, Kubeconfig: writeFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\n")}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			o := Options{Namespace: "sg", Service: "gate", Registries: []string{PlaceholderRegistry}}
			srv, err := ServerFiles(cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			o.Server = srv
			var role *rbacv1.ClusterRole
			var binding *rbacv1.ClusterRoleBinding
			var dep *appsv1.Deployment
			var cm *corev1.ConfigMap
			for _, obj := range Deployment(o) {
				switch v := obj.(type) {
				case *rbacv1.ClusterRole:
					role = v
				case *rbacv1.ClusterRoleBinding:
					binding = v
				case *appsv1.Deployment:
					dep = v
				case *corev1.ConfigMap:
					if v.Name == "gate-config" {
						cm = v
					}
				}
			}
			if got := *dep.Spec.Template.Spec.AutomountServiceAccountToken; got != enabled {
				t.Errorf("automountServiceAccountToken = %v, want %v", got, enabled)
			}
			served, err := config.Load(writeFile(t, "config.yaml", cm.Data[ConfigFile]))
			if err != nil {
				t.Fatal(err)
			}
			if s := served.Admission.Sources; s.Enabled != enabled || s.Kubeconfig != "" {
				t.Errorf("server's admission.sources = %+v, want enabled %v, in-cluster", s, enabled)
			}
			if !enabled {
				if role != nil || binding != nil {
					t.Errorf("RBAC generated with sources off: %v %v", role, binding)
				}
				return
			}
			want := rbacv1.PolicyRule{APIGroups: []string{"source.toolkit.fluxcd.io"},
				Resources: []string{"helmcharts", "helmrepositories", "ocirepositories"}, Verbs: []string{"get", "list", "watch"}}
			if role == nil || role.Name != "gate-sources" || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].APIGroups, want.APIGroups) ||
				!slices.Equal(role.Rules[0].Resources, want.Resources) || !slices.Equal(role.Rules[0].Verbs, want.Verbs) {
				t.Errorf("ClusterRole = %+v, want one rule %+v", role, want)
			}
			if binding == nil || binding.RoleRef.Name != "gate-sources" || len(binding.Subjects) != 1 ||
				binding.Subjects[0].Name != "gate" || binding.Subjects[0].Namespace != "sg" {
				t.Errorf("ClusterRoleBinding = %+v", binding)
			}
		})
	}
}
