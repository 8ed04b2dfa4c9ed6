package admission

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/stagegate/stagegate/internal/pki"
)

// testForgedReview (issue 12): anyone who can reach the webhook's port
// could post a review claiming userInfo system:admin with a break-glass
// annotation, and get a signed ledger entry under that name. With
// admission.clientCAFile set, only the API server's client certificate
// opens the webhook's listener: the API server's own calls succeed (every
// other scenario of this suite), a direct post without the certificate, or
// with one from another CA, is refused at the handshake, and the ledger
// does not grow.
func (s *suite) testForgedReview(t *testing.T, img images) {
	before := s.ledgerSize(t)
	p := pod("dev-forged", "forged", img.nowhere)
	p.Annotations = map[string]string{breakGlassAnnotation: "I am the admin"}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "forged-1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "dev-forged", Name: "forged", Operation: admissionv1.Create,
			UserInfo: authenticationv1.UserInfo{Username: "system:admin", Groups: []string{"system:masters"}},
			Object:   runtime.RawExtension{Raw: raw},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(s.caFile())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	other := t.TempDir()
	if err := pki.Generate(other, pki.Options{Hosts: []string{"x"}}); err != nil {
		t.Fatal(err)
	}
	if err := pki.GenerateClient(other, "kube-apiserver", pki.Options{}); err != nil {
		t.Fatal(err)
	}
	wrongCA, err := tls.LoadX509KeyPair(filepath.Join(other, pki.ClientCert), filepath.Join(other, pki.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	for name, certs := range map[string][]tls.Certificate{
		"no client certificate":             nil,
		"a certificate from another CA":     {wrongCA},
		"the serving certificate as client": {mustPair(t, filepath.Join(s.certDir(), "tls.crt"), filepath.Join(s.certDir(), "tls.key"))},
	} {
		t.Run(name, func(t *testing.T) {
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
				RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12,
			}}}
			defer c.CloseIdleConnections()
			resp, err := c.Post(s.webhookURL+"/admission/validate/dev", "application/json", bytes.NewReader(body))
			if err == nil {
				resp.Body.Close()
				t.Fatalf("the webhook answered %s to a review from outside the API server", resp.Status)
			}
			if !strings.Contains(err.Error(), "certificate") {
				t.Errorf("error %q does not say a certificate is required", err)
			}
		})
	}
	// The promotion API's listener has no webhook: a review posted there
	// finds nothing.
	c := s.httpClient(t)
	defer c.CloseIdleConnections()
	resp, err := c.Post(s.url+"/admission/validate/dev", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("review on the API listener: %s, want 404", resp.Status)
	}
	if after := s.ledgerSize(t); after != before {
		t.Errorf("ledger grew from %d to %d entries after forged reviews", before, after)
	}
}

func mustPair(t *testing.T, cert, key string) tls.Certificate {
	t.Helper()
	p, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
