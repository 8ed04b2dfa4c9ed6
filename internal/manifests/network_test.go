package manifests

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8slabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
)

// installed is what Deployment(o) returns, by kind.
type installed struct {
	cms        map[string]*corev1.ConfigMap
	svc        *corev1.Service
	np         *networkingv1.NetworkPolicy
	deployment *appsv1.Deployment
	cfg        config.Config
}

func install(t *testing.T, o Options) installed {
	t.Helper()
	in := installed{cms: map[string]*corev1.ConfigMap{}}
	for _, obj := range Deployment(o) {
		switch obj := obj.(type) {
		case *corev1.ConfigMap:
			in.cms[obj.Name] = obj
		case *corev1.Service:
			in.svc = obj
		case *networkingv1.NetworkPolicy:
			in.np = obj
		case *appsv1.Deployment:
			in.deployment = obj
		}
	}
	if in.svc == nil || in.np == nil || in.deployment == nil || in.cms["stagegate-config"] == nil {
		t.Fatalf("Deployment() lacks a Service, NetworkPolicy, Deployment or config: %+v", in)
	}
	if err := yaml.UnmarshalStrict([]byte(in.cms["stagegate-config"].Data[ConfigFile]), &in.cfg); err != nil {
		t.Fatal(err)
	}
	return in
}

// TestServerFilesClientAuth checks where the CA of the API server's client
// certificate comes from, and that the config the server gets accepts it.
func TestServerFilesClientAuth(t *testing.T) {
	const otherCA = "-----BEGIN CERTIFICATE-----\nb3RoZXI=\n-----END CERTIFICATE-----\n"
	configCA := func(c *config.Config) {
		c.Admission.Listen = "127.0.0.1:9443"
		c.Admission.ClientCAFile = writeFile(t, "ca.crt", otherCA)
	}
	tests := []struct {
		name   string
		modify func(*config.Config)
		o      Options
		auth   bool
		ca     string
	}{
		{"default: required, ConfigMap left to the operator", func(*config.Config) {}, Options{}, true, ""},
		{"CA from the options", func(*config.Config) {}, Options{WebhookClientCA: []byte(testCA)}, true, testCA},
		{"CA from the config", configCA, Options{}, true, otherCA},
		{"the options' CA over the config's", configCA, Options{WebhookClientCA: []byte(testCA)}, true, testCA},
		{"off", func(*config.Config) {}, Options{NoWebhookClientAuth: true, APIServerCIDRs: []string{"10.0.0.0/8"}}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := config.Default()
			c.Registries = []config.Registry{{Host: "registry.example.com"}}
			tt.modify(c)
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			srv, err := ServerFiles(c, tt.o)
			if err != nil {
				t.Fatal(err)
			}
			if srv.ClientAuth != tt.auth || srv.ClientCA != tt.ca {
				t.Errorf("client auth %v with CA %q, want %v with %q", srv.ClientAuth, srv.ClientCA, tt.auth, tt.ca)
			}
			path := filepath.Join(t.TempDir(), "config.yaml")
			if err := os.WriteFile(path, srv.Config, 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := got.Validate(); err != nil {
				t.Fatalf("the server would refuse its config: %v", err)
			}
			// The webhook keeps its own port either way, so that the
			// NetworkPolicy can tell it from the API's.
			wantCA := ""
			if tt.auth {
				wantCA = APIServerCADir + "/" + ClientCAKey
			}
			if got.Admission.Listen != fmt.Sprintf(":%d", WebhookPort) || got.Admission.ClientCAFile != wantCA {
				t.Errorf("admission listen %q clientCAFile %q, want :%d and %q", got.Admission.Listen, got.Admission.ClientCAFile, WebhookPort, wantCA)
			}
		})
	}
}

// TestDeploymentClientAuth ties the ConfigMap of the API server's CA, its
// mount and the server's config together for each way of giving the CA.
func TestDeploymentClientAuth(t *testing.T) {
	tests := []struct {
		name              string
		o                 Options
		mounted, emitted  bool
		wantCA, wantCAKey string
	}{
		{"default", Options{}, true, false, "", APIServerCADir + "/" + ClientCAKey},
		{"CA given", Options{WebhookClientCA: []byte(testCA)}, true, true, testCA, APIServerCADir + "/" + ClientCAKey},
		{"off", Options{NoWebhookClientAuth: true, APIServerCIDRs: []string{"10.0.0.0/8"}}, false, false, "", ""},
	}
	hashes := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Stages = []string{"dev"}
			if err := tt.o.Validate(); err != nil {
				t.Fatal(err)
			}
			in := install(t, tt.o)
			cm := in.cms["stagegate-apiserver-ca"]
			if (cm != nil) != tt.emitted || (cm != nil && (len(cm.Data) != 1 || cm.Data[ClientCAKey] != tt.wantCA)) {
				t.Errorf("apiserver-ca ConfigMap %+v, want emitted=%v with %q", cm, tt.emitted, tt.wantCA)
			}
			if in.cfg.Admission.ClientCAFile != tt.wantCAKey {
				t.Errorf("admission.clientCAFile %q, want %q", in.cfg.Admission.ClientCAFile, tt.wantCAKey)
			}
			pod := in.deployment.Spec.Template.Spec
			var vol *corev1.Volume
			for i := range pod.Volumes {
				if pod.Volumes[i].Name == "apiserver-ca" {
					vol = &pod.Volumes[i]
				}
			}
			mount := slices.IndexFunc(pod.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
				return m.Name == "apiserver-ca" && m.MountPath == APIServerCADir && m.ReadOnly
			})
			if (vol != nil) != tt.mounted || (mount >= 0) != tt.mounted {
				t.Fatalf("apiserver-ca volume %+v, mount %d, want mounted=%v", vol, mount, tt.mounted)
			}
			// Not optional: the pod waits for the operator's ConfigMap
			// rather than starting without the CA.
			if vol != nil && (vol.ConfigMap == nil || vol.ConfigMap.Name != "stagegate-apiserver-ca" || vol.ConfigMap.Optional != nil) {
				t.Errorf("apiserver-ca volume %+v", vol.ConfigMap)
			}
			hashes[in.deployment.Spec.Template.Annotations[ConfigHashAnnotation]] = true
		})
	}
	if len(hashes) != len(tests) {
		t.Errorf("%d config hashes for %d installations: a CA change must restart the server", len(hashes), len(tests))
	}
}

// TestPorts checks that the webhook configurations' port 443 reaches the
// webhook's listener, the API's Service port its listener, and that the
// probes avoid the port that requires a client certificate.
func TestPorts(t *testing.T) {
	in := install(t, Options{Stages: []string{"dev"}})
	c := in.deployment.Spec.Template.Spec.Containers[0]
	containerPort := map[string]int32{}
	for _, p := range c.Ports {
		containerPort[p.Name] = p.ContainerPort
	}
	listen := map[string]string{webhookPortName: in.cfg.Admission.Listen, apiPortName: in.cfg.Listen}
	servicePort := map[string]int32{webhookPortName: 443, apiPortName: ServingPort}
	if len(in.svc.Spec.Ports) != 2 || len(containerPort) != 2 {
		t.Fatalf("service ports %+v, container ports %+v: want two each", in.svc.Spec.Ports, c.Ports)
	}
	for _, sp := range in.svc.Spec.Ports {
		cp, ok := containerPort[sp.TargetPort.StrVal]
		if !ok || sp.Port != servicePort[sp.Name] || sp.TargetPort.StrVal != sp.Name {
			t.Errorf("service port %+v does not map %d to container port %q", sp, servicePort[sp.Name], sp.Name)
		}
		if _, port, _ := net.SplitHostPort(listen[sp.Name]); port != fmt.Sprint(cp) {
			t.Errorf("container port %s is %d, but the server listens on %q", sp.Name, cp, listen[sp.Name])
		}
	}
	if vwc := WebhookConfiguration(Options{Stages: []string{"dev"}}); *vwc.Webhooks[0].ClientConfig.Service.Port != servicePort[webhookPortName] {
		t.Errorf("webhooks call port %d", *vwc.Webhooks[0].ClientConfig.Service.Port)
	}
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
		if p.HTTPGet.Port.StrVal != apiPortName {
			t.Errorf("probe on port %v, want %q: the webhook's port requires a client certificate", p.HTTPGet.Port, apiPortName)
		}
	}
}

func TestNetworkPolicy(t *testing.T) {
	port := func(p int32) string { return fmt.Sprintf("TCP/%d", p) }
	peers := func(r networkingv1.NetworkPolicyIngressRule) []string {
		var out []string
		for _, p := range r.From {
			switch {
			case p.IPBlock != nil:
				out = append(out, "ip "+p.IPBlock.CIDR)
			case p.PodSelector != nil:
				out = append(out, "pods "+metav1.FormatLabelSelector(p.NamespaceSelector)+" / "+metav1.FormatLabelSelector(p.PodSelector))
			default:
				out = append(out, "namespaces "+metav1.FormatLabelSelector(p.NamespaceSelector))
			}
		}
		return out
	}
	tests := []struct {
		name         string
		o            Options
		webhook, api []string
		open         bool
	}{
		{"default: webhook open, API to the cluster's pods", Options{}, nil, []string{"namespaces <none>"}, true},
		{"apiserver cidrs and pods", Options{
			APIServerCIDRs: []string{"192.0.2.0/28", "2001:db8::/64"},
			APIServerPods:  []string{"kube-system/k8s-app=konnectivity-agent", "gate"},
		}, []string{"ip 192.0.2.0/28", "ip 2001:db8::/64",
			"pods kubernetes.io/metadata.name=kube-system / k8s-app=konnectivity-agent", "pods kubernetes.io/metadata.name=gate / <none>"},
			[]string{"namespaces <none>"}, false},
		{"api clients", Options{
			NoWebhookClientAuth: true, APIServerCIDRs: []string{"172.16.0.0/28"},
			APIClientNamespaces: "team in (ci)", APIClientCIDRs: []string{"203.0.113.0/24"},
		}, []string{"ip 172.16.0.0/28"}, []string{"namespaces team in (ci)", "ip 203.0.113.0/24"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Stages = []string{"dev"}
			if err := tt.o.Validate(); err != nil {
				t.Fatal(err)
			}
			in := install(t, tt.o)
			np := in.np
			if !reflect.DeepEqual(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}) || len(np.Spec.Ingress) != 2 {
				t.Fatalf("spec %+v, want two ingress rules", np.Spec)
			}
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || sel.Empty() || !sel.Matches(k8slabels.Set(in.deployment.Spec.Template.Labels)) {
				t.Errorf("podSelector %v does not select the stagegate pods", np.Spec.PodSelector)
			}
			for i, want := range []struct {
				port  string
				peers []string
			}{{port(WebhookPort), tt.webhook}, {port(ServingPort), tt.api}} {
				r := np.Spec.Ingress[i]
				if len(r.Ports) != 1 || fmt.Sprintf("%s/%s", *r.Ports[0].Protocol, r.Ports[0].Port) != want.port {
					t.Errorf("rule %d ports %+v, want %s", i, r.Ports, want.port)
				}
				if got := peers(r); !slices.Equal(got, want.peers) {
					t.Errorf("rule %d (%s) from %q, want %q", i, want.port, got, want.peers)
				}
			}
			if _, open := np.Annotations[WebhookIngressAnnotation]; open != tt.open || tt.o.WebhookOpen() != tt.open {
				t.Errorf("annotations %v, WebhookOpen %v: want open=%v", np.Annotations, tt.o.WebhookOpen(), tt.open)
			}
		})
	}
}

// TestAPIServerFiles checks the control-plane material of deploy/apiserver
// against what the generated objects need; TestAPIServer runs the real API
// server with it.
func TestAPIServerFiles(t *testing.T) {
	dir := filepath.Join(root, "deploy/apiserver")
	kc, err := clientcmd.LoadFromFile(filepath.Join(dir, "webhook-kubeconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The API server looks a Service webhook's credentials up by
	// "<service>.<namespace>.svc:<port>", then without ":443".
	want := DefaultService + "." + DefaultNamespace + ".svc"
	if len(kc.AuthInfos) != 1 || kc.AuthInfos[want] == nil {
		t.Fatalf("kubeconfig users %v, want only %q", kc.AuthInfos, want)
	}
	if u := kc.AuthInfos[want]; u.ClientCertificate != shippedDir+"client.crt" || u.ClientKey != shippedDir+"client.key" {
		t.Errorf("user %q has certificate %q and key %q, want them in %s", want, u.ClientCertificate, u.ClientKey, shippedDir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "admission-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ac struct {
		APIVersion, Kind string
		Plugins          []struct {
			Name          string
			Configuration struct {
				APIVersion, Kind string
				KubeConfigFile   string `json:"kubeConfigFile"`
			}
		}
	}
	if err := yaml.UnmarshalStrict(b, &ac); err != nil {
		t.Fatal(err)
	}
	var plugins []string
	for _, p := range ac.Plugins {
		plugins = append(plugins, p.Name)
		if c := p.Configuration; c.APIVersion != "apiserver.config.k8s.io/v1" || c.Kind != "WebhookAdmissionConfiguration" ||
			c.KubeConfigFile != shippedDir+"webhook-kubeconfig.yaml" {
			t.Errorf("plugin %s: configuration %+v", p.Name, c)
		}
	}
	if ac.Kind != "AdmissionConfiguration" || !slices.Equal(plugins, []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"}) {
		t.Errorf("%s with plugins %v", ac.Kind, plugins)
	}
	readme, err := os.ReadFile(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{
		"--admission-control-config-file=" + shippedDir + "admission-config.yaml",
		"stagegate certs generate --dir client-ca && stagegate certs client --dir client-ca",
		"- name: " + want,
		"create configmap stagegate-apiserver-ca --from-file=" + ClientCAKey + "=client-ca/ca.crt",
	} {
		if !strings.Contains(string(readme), s) {
			t.Errorf("README.md lacks %q", s)
		}
	}
}
