package manifests

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/stagegate/stagegate/internal/pki"
)

// shippedDir is where deploy/apiserver tells operators to put its files.
const shippedDir = "/etc/kubernetes/stagegate/"

// webhookAuth is the material of deploy/apiserver/README.md, made the way
// it says, with the shipped files pointing at a temporary directory.
type webhookAuth struct {
	// admissionConfig is deploy/apiserver/admission-config.yaml.
	admissionConfig string
	// clientCA is the CA of the API server's client certificate.
	clientCA []byte
	// serving is the webhook's serving certificate, signed by servingCA.
	serving   tls.Certificate
	servingCA []byte
}

func newWebhookAuth(t *testing.T) *webhookAuth {
	t.Helper()
	dir := t.TempDir()
	clientDir, servingDir := filepath.Join(dir, "client-ca"), filepath.Join(dir, "certs")
	// `stagegate certs generate --dir client-ca && stagegate certs client --dir client-ca`.
	if err := pki.Generate(clientDir, pki.Options{Hosts: pki.ServiceHosts(DefaultService, DefaultNamespace)}); err != nil {
		t.Fatal(err)
	}
	if err := pki.GenerateClient(clientDir, "kube-apiserver", pki.Options{}); err != nil {
		t.Fatal(err)
	}
	if err := pki.Generate(servingDir, pki.Options{Hosts: pki.ServiceHosts(DefaultService, DefaultNamespace)}); err != nil {
		t.Fatal(err)
	}
	etc := filepath.Join(dir, "etc") + "/"
	if err := os.Mkdir(etc, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile := func(from, to string) {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		// The shipped files name their siblings under shippedDir.
		b = []byte(strings.ReplaceAll(string(b), shippedDir, etc))
		if err := os.WriteFile(to, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"admission-config.yaml", "webhook-kubeconfig.yaml"} {
		copyFile(filepath.Join(root, "deploy/apiserver", f), etc+f)
	}
	copyFile(filepath.Join(clientDir, pki.ClientCert), etc+"client.crt")
	copyFile(filepath.Join(clientDir, pki.ClientKey), etc+"client.key")
	a := &webhookAuth{admissionConfig: etc + "admission-config.yaml"}
	var err error
	if a.clientCA, err = os.ReadFile(filepath.Join(clientDir, pki.CACert)); err != nil {
		t.Fatal(err)
	}
	if a.servingCA, err = os.ReadFile(filepath.Join(servingDir, pki.CACert)); err != nil {
		t.Fatal(err)
	}
	if a.serving, err = tls.LoadX509KeyPair(filepath.Join(servingDir, pki.TLSCert), filepath.Join(servingDir, pki.TLSKey)); err != nil {
		t.Fatal(err)
	}
	return a
}

// configure starts the API server with the shipped admission
// configuration, and has it send webhook calls to a Service's endpoints
// rather than to its ClusterIP, which nothing routes in envtest.
func (a *webhookAuth) configure(env *envtest.Environment) {
	env.ControlPlane.GetAPIServer().Configure().
		Set("admission-control-config-file", a.admissionConfig).
		Set("enable-aggregator-routing", "true")
}

// hostIP is an address of this machine that an EndpointSlice may hold:
// the API server refuses loopback endpoints.
func hostIP() (net.IP, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.To4(), nil
		}
	}
	return nil, errors.New("no non-loopback IPv4 address")
}

// testClientCertificate has the real API server call, through the
// generated Service and the shipped kubeconfig, a webhook server that
// requires a client certificate signed by the client CA, as stagegate's
// webhook listener does: the call must succeed and carry the API server's
// certificate. A user name in the kubeconfig that did not match the
// Service would send none, and the call would fail at the handshake.
func testClientCertificate(t *testing.T, c client.Client, a *webhookAuth, o Options) {
	ctx := context.Background()
	o = o.withDefaults()
	ip, err := hostIP()
	if err != nil {
		cannotRun(t, fmt.Sprintf("no address for an endpoint (%v)", err), "run it on a machine with a non-loopback IPv4 address")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(a.clientCA) {
		t.Fatal("client CA holds no certificate")
	}
	var mu sync.Mutex
	var callers []string
	ln, err := tls.Listen("tcp", net.JoinHostPort(ip.String(), "0"), &tls.Config{
		Certificates: []tls.Certificate{a.serving},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		mu.Lock()
		callers = append(callers, r.URL.Path+" "+r.TLS.PeerCertificates[0].Subject.CommonName)
		mu.Unlock()
		review.Response = &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
		review.Request = nil
		_ = json.NewEncoder(w).Encode(&review)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	// The webhook configuration as installed, with the serving CA.
	o.CABundle = a.servingCA
	vwc := WebhookConfiguration(o)
	cur := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := c.Get(ctx, client.ObjectKeyFromObject(vwc), cur); err != nil {
		t.Fatal(err)
	}
	vwc.ResourceVersion = cur.ResourceVersion
	if err := c.Update(ctx, vwc); err != nil {
		t.Fatal(err)
	}
	// What the EndpointSlice controller would write for the generated
	// Service: its port's name, and the number of the container port it
	// targets (here, the test server's).
	name, port, ready := webhookPortName, int32(ln.Addr().(*net.TCPAddr).Port), true
	tcp := corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: o.Service + "-test", Namespace: o.Namespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: o.Service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip.String()}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &tcp}},
	}
	if err := c.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	if err := eventually(func() error {
		return c.Create(ctx, testPod("authenticated", "team-dev", ""), client.DryRunAll)
	}); err != nil {
		t.Fatalf("the API server's call to the webhook failed: %v", err)
	}
	if err := c.Create(ctx, testPod("authenticated", "team-dev", "")); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := ValidatePath + "dev kube-apiserver"
	if len(callers) == 0 || callers[len(callers)-1] != want {
		t.Errorf("webhook calls %q, want the last to be %q", callers, want)
	}
}

// testNetworkValidation has the API server validate, by dry run, the
// NetworkPolicy and the server's objects for other options, with no
// warning.
func testNetworkValidation(t *testing.T, c client.Client, warn *warnings) {
	ctx := context.Background()
	tests := []struct {
		name string
		o    Options
	}{
		{"webhook open", Options{}},
		{"peers, both families", Options{
			APIServerCIDRs: []string{"192.0.2.0/28", "2001:db8::/64", "198.51.100.7/32"},
			APIServerPods:  []string{"kube-system/k8s-app=konnectivity-agent", "kube-system/tier in (control-plane),app notin (x)", "gate"},
		}},
		{"api clients", Options{
			APIServerCIDRs:      []string{"10.0.0.0/8"},
			APIClientNamespaces: "stagegate.dev/api-client=true,team notin (sandbox)",
			APIClientCIDRs:      []string{"203.0.113.0/24", "::/0"},
		}},
		{"client certificate off", Options{NoWebhookClientAuth: true, APIServerCIDRs: []string{"172.16.0.0/28"}}},
		{"client CA embedded", Options{WebhookClientCA: []byte(testCA), APIServerPods: []string{"kube-system"}}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.Stages = []string{"dev"}
			if err := tt.o.Validate(); err != nil {
				t.Fatal(err)
			}
			warn.mu.Lock()
			before := len(warn.msgs)
			warn.mu.Unlock()
			for _, obj := range Deployment(tt.o) {
				co := obj.(client.Object)
				if _, ok := obj.(*corev1.Namespace); ok {
					continue
				}
				co.SetName(fmt.Sprintf("%s-n%d", co.GetName(), i))
				if err := c.Create(ctx, co, client.DryRunAll); err != nil {
					t.Errorf("%T: %v", obj, err)
				}
			}
			warn.mu.Lock()
			defer warn.mu.Unlock()
			if msgs := warn.msgs[before:]; len(msgs) > 0 {
				t.Errorf("the API server warned: %q", msgs)
			}
		})
	}
}
