package framework

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stagegate/stagegate/internal/pki"
)

// WebhookClientAuth is what kube-apiserver needs to authenticate itself to
// a webhook at host:port with a client certificate: a CA of its own (give
// CAFile to stagegate as admission.clientCAFile), a client certificate
// signed by it, and the AdmissionConfiguration that hands it to the
// ValidatingAdmissionWebhook and MutatingAdmissionWebhook plugins.
type WebhookClientAuth struct {
	Dir             string
	CAFile          string
	AdmissionConfig string
}

// NewWebhookClientAuth writes that material into a new directory. hostPort
// is the webhook's address as it appears in its URL ("127.0.0.1:9443"); the
// API server picks the credentials by that name.
func NewWebhookClientAuth(t testing.TB, hostPort string) *WebhookClientAuth {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "apiserver-client")
	if err := pki.Generate(dir, pki.Options{Hosts: []string{"unused.invalid"}}); err != nil {
		t.Fatal(err)
	}
	if err := pki.GenerateClient(dir, "kube-apiserver", pki.Options{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "webhook-kubeconfig.yaml")
	writeTestFile(t, kubeconfig, fmt.Sprintf(`apiVersion: v1
kind: Config
users:
- name: %q
  user:
    client-certificate: %s
    client-key: %s
`, hostPort, filepath.Join(dir, pki.ClientCert), filepath.Join(dir, pki.ClientKey)))
	cfg := filepath.Join(dir, "admission-config.yaml")
	plugin := func(name string) string {
		return fmt.Sprintf(`- name: %s
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: WebhookAdmissionConfiguration
    kubeConfigFile: %s
`, name, kubeconfig)
	}
	writeTestFile(t, cfg, "apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n"+
		plugin("ValidatingAdmissionWebhook")+plugin("MutatingAdmissionWebhook"))
	return &WebhookClientAuth{Dir: dir, CAFile: filepath.Join(dir, pki.CACert), AdmissionConfig: cfg}
}

func writeTestFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
