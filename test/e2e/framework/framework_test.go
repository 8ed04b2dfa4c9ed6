package framework

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAPIServer(t *testing.T) {
	a := StartAPIServer(t)
	ctx := t.Context()

	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:   "via-clientset",
		Labels: map[string]string{"stagegate.dev/stage": "dev"},
	}}
	if _, err := a.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create namespace via clientset: %v", err)
	}
	if _, stderr, err := a.Kubectl(t, "create", "namespace", "via-kubectl"); err != nil {
		t.Fatalf("kubectl create namespace: %v\n%s", err, stderr)
	}

	// Each client sees what the other created.
	if _, err := a.Clientset.CoreV1().Namespaces().Get(ctx, "via-kubectl", metav1.GetOptions{}); err != nil {
		t.Errorf("get namespace created by kubectl: %v", err)
	}
	stdout, stderr, err := a.Kubectl(t, "get", "namespace", "via-clientset",
		"-o", `jsonpath={.metadata.labels.stagegate\.dev/stage}`)
	if err != nil {
		t.Fatalf("kubectl get namespace: %v\n%s", err, stderr)
	}
	if stdout != "dev" {
		t.Errorf("kubectl stage label = %q, want %q", stdout, "dev")
	}

	// Failures come back as errors with kubectl's message, not test failures.
	_, stderr, err = a.Kubectl(t, "get", "namespace", "does-not-exist")
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) || !strings.Contains(stderr, "NotFound") {
		t.Errorf("kubectl get missing namespace: err = %v, stderr = %q; want exit error and NotFound", err, stderr)
	}
	if _, err := a.Clientset.CoreV1().Namespaces().Get(ctx, "does-not-exist", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("get missing namespace: err = %v, want NotFound", err)
	}
}

func TestRegistry(t *testing.T) {
	certPEM, keyPEM := selfSignedCert(t)
	tests := map[string]struct {
		opts     []RegistryOption
		wantAuth bool
	}{
		"plain http":        {},
		"htpasswd":          {opts: []RegistryOption{WithHtpasswd("ci", "s3cret")}, wantAuth: true},
		"tls":               {opts: []RegistryOption{WithTLS(certPEM, keyPEM)}},
		"tls with htpasswd": {opts: []RegistryOption{WithTLS(certPEM, keyPEM), WithHtpasswd("ci", "s3cret")}, wantAuth: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := StartRegistry(t, tc.opts...)
			img, err := random.Image(1024, 2)
			if err != nil {
				t.Fatal(err)
			}
			want, err := img.Digest()
			if err != nil {
				t.Fatal(err)
			}
			ref := mustParse(t, r.Repo("smoke/app:v1"))
			opts := []remote.Option{remote.WithAuth(r.Authenticator()), remote.WithTransport(r.Transport()), remote.WithContext(t.Context())}

			if tc.wantAuth {
				err := remote.Write(ref, img, remote.WithTransport(r.Transport()), remote.WithContext(t.Context()))
				var terr *transport.Error
				if !errors.As(err, &terr) || terr.StatusCode != 401 {
					t.Fatalf("anonymous push: err = %v, want 401", err)
				}
			}
			if err := remote.Write(ref, img, opts...); err != nil {
				t.Fatalf("push: %v", err)
			}
			assertDigest(t, ref, want, opts)

			r.Stop()
			if _, err := remote.Head(ref, opts...); err == nil {
				t.Fatal("head while stopped: want an error")
			}
			r.Stop() // idempotent

			// Same address and storage after a restart.
			r.Start()
			assertDigest(t, ref, want, opts)
		})
	}
}

func assertDigest(t *testing.T, ref name.Reference, want v1.Hash, opts []remote.Option) {
	t.Helper()
	desc, err := remote.Head(ref, opts...)
	if err != nil {
		t.Fatalf("head %s: %v", ref, err)
	}
	if desc.Digest != want {
		t.Errorf("digest of %s = %s, want %s", ref, desc.Digest, want)
	}
}

func TestBuildBinary(t *testing.T) {
	const pkg = "./test/e2e/framework/testdata/hello"
	first := BuildBinary(t, pkg)
	if again := BuildBinary(t, pkg); again != first {
		t.Errorf("second build = %s, want the cached %s", again, first)
	}
	out, err := exec.Command(first).Output()
	if err != nil {
		t.Fatalf("run %s: %v", first, err)
	}
	if got := strings.TrimSpace(string(out)); got != "hello from BuildBinary" {
		t.Errorf("output = %q", got)
	}
}

func TestFreePort(t *testing.T) {
	p := FreePort(t)
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
	if err != nil {
		t.Fatalf("listen on free port %d: %v", p, err)
	}
	l.Close()
}

func mustParse(t *testing.T, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// selfSignedCert returns a PEM certificate and key valid for 127.0.0.1.
func selfSignedCert(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "stagegate e2e registry"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
}

func TestMain(m *testing.M) { Main(m) }
