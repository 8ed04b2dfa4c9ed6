package manifests

import (
	"path/filepath"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/inventory"
)

// TestContinuousValidationObjects: with continuous validation on, the
// installation carries the PolicyReport CRD, the least RBAC the controller
// needs and a service account token, and the server's config points at
// the cluster it runs in; with it off, none of them.
func TestContinuousValidationObjects(t *testing.T) {
	for name, enabled := range map[string]bool{"enabled": true, "disabled": false} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.ContinuousValidation.Enabled = enabled
			cfg.ContinuousValidation.Kubeconfig = writeFile(t, "kubeconfig", "apiVersion: v1\nkind: Config\n")
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			o := Options{Namespace: "sg", Service: "gate", Registries: []string{PlaceholderRegistry}}
			srv, err := ServerFiles(cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			o.Server = srv
			var kinds []string
			var crd *apiextensionsv1.CustomResourceDefinition
			var clusterRole *rbacv1.ClusterRole
			var role *rbacv1.Role
			var dep *appsv1.Deployment
			var cm *corev1.ConfigMap
			for _, obj := range Deployment(o) {
				switch v := obj.(type) {
				case *apiextensionsv1.CustomResourceDefinition:
					crd = v
				case *rbacv1.ClusterRole:
					clusterRole = v
				case *rbacv1.Role:
					role = v
				case *appsv1.Deployment:
					dep = v
				case *corev1.ConfigMap:
					if v.Name == "gate-config" {
						cm = v
					}
				}
				kinds = append(kinds, obj.GetObjectKind().GroupVersionKind().Kind)
			}
			rbac := []string{"CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
			for _, k := range rbac {
				if slices.Contains(kinds, k) != enabled {
					t.Errorf("%s in the objects %v: %v, want %v", k, kinds, !enabled, enabled)
				}
			}
			if got := *dep.Spec.Template.Spec.AutomountServiceAccountToken; got != enabled {
				t.Errorf("automountServiceAccountToken = %v, want %v", got, enabled)
			}
			served, err := config.Load(writeFile(t, "config.yaml", cm.Data[ConfigFile]))
			if err != nil {
				t.Fatal(err)
			}
			if cv := served.ContinuousValidation; cv.Enabled != enabled || cv.Kubeconfig != "" || cv.Lease.Namespace != "" {
				t.Errorf("server's continuousValidation = %+v, want enabled %v, in-cluster, the Lease in its namespace", cv, enabled)
			}
			if !enabled {
				return
			}
			if crd.Name != "policyreports.wgpolicyk8s.io" || crd.Spec.Versions[0].Name != "v1alpha2" {
				t.Errorf("CRD %s %+v", crd.Name, crd.Spec.Versions)
			}
			wantRules := map[string][]string{
				"/pods": {"list", "watch"}, "/namespaces": {"list", "watch"}, "apps/replicasets": {"get"},
				"/events": {"create", "patch"}, "wgpolicyk8s.io/policyreports": {"get", "list", "create", "patch", "delete"},
			}
			// Every GitOps kind the inventory watches, read-only.
			for _, k := range inventory.GitOpsKinds {
				wantRules[k.Group+"/"+k.Resource] = []string{"list", "watch"}
			}
			got := map[string][]string{}
			for _, r := range clusterRole.Rules {
				for _, g := range r.APIGroups {
					for _, res := range r.Resources {
						got[g+"/"+res] = r.Verbs
					}
				}
			}
			if len(got) != len(wantRules) {
				t.Errorf("ClusterRole rules %v, want %v", got, wantRules)
			}
			for k, v := range wantRules {
				if !slices.Equal(got[k], v) {
					t.Errorf("ClusterRole %s: %v, want %v", k, got[k], v)
				}
			}
			if role.Namespace != "sg" || len(role.Rules) != 1 || !slices.Equal(role.Rules[0].Resources, []string{"leases"}) ||
				!slices.Equal(role.Rules[0].Verbs, []string{"get", "create", "update"}) {
				t.Errorf("Role %s/%s: %+v, want leases get/create/update in sg", role.Namespace, role.Name, role.Rules)
			}
		})
	}
}

// TestEvictionRBAC: continuous validation's ClusterRole grants
// pods/eviction (create, never delete on pods) only when a stage evicts.
func TestEvictionRBAC(t *testing.T) {
	for name, onViolation := range map[string]string{"report": "", "evict": "evict"} {
		t.Run(name, func(t *testing.T) {
			cfg := config.Default()
			cfg.ContinuousValidation.Enabled = true
			cfg.Stages[len(cfg.Stages)-1].Mode = config.ModeEnforce
			cfg.Stages[len(cfg.Stages)-1].OnViolation = onViolation
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
			for _, obj := range Deployment(o) {
				if v, ok := obj.(*rbacv1.ClusterRole); ok {
					role = v
				}
			}
			if role == nil {
				t.Fatal("no ClusterRole")
			}
			b, err := yaml.Marshal(role)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("testdata", "inventory-clusterrole-"+name+".yaml"), b)
		})
	}
}
