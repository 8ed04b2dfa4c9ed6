package cli

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/pki"
)

// `certs generate --peers` writes the peer CA and one directory per
// member, defaulting to the peers' headless Service, and keeps what exists.
func TestCertsGeneratePeers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "peers")
	out, _, err := run(t, "certs", "generate", "--dir", dir, "--peers", "stagegate-0,stagegate-1,stagegate-2", "--namespace", "gate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "create secret generic stagegate-1-peer --from-file="+filepath.Join(dir, "stagegate-1")+"/") {
		t.Errorf("output does not say how to make the Secret:\n%s", out)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, "stagegate-2", pki.TLSCert), filepath.Join(dir, "stagegate-2", pki.TLSKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	if want := "stagegate-2.stagegate-peers.gate.svc"; cert.DNSNames[0] != want {
		t.Errorf("DNS names %v, want %s first", cert.DNSNames, want)
	}
	key, _ := os.ReadFile(filepath.Join(dir, "stagegate-0", pki.TLSKey))
	_, _, err = run(t, "certs", "generate", "--dir", dir, "--peers", "stagegate-0")
	if err == nil || !strings.Contains(err.Error(), "--force") || !strings.Contains(err.Error(), filepath.Join(dir, "stagegate-0")) {
		t.Errorf("second run = %v, want a refusal naming the file and --force", err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "stagegate-0", pki.TLSKey)); string(again) != string(key) {
		t.Error("the refused run replaced the key")
	}
	if _, _, err := run(t, "certs", "generate", "--dir", dir, "--peers", "stagegate-0", "--force"); err != nil {
		t.Errorf("--force: %v", err)
	}
}

func TestCertsGeneratePeersRefuses(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"empty", []string{"--peers", ""}, "no member ID given (--peers)"},
		{"not a label", []string{"--peers", "stagegate_0"}, `peer "stagegate_0" must be a DNS label`},
		{"twice", []string{"--peers", "a,b,a"}, `peer "a" listed twice`},
		{"service", []string{"--peers", "a", "--service", "Peers"}, `service "Peers" must be a DNS label`},
		{"namespace", []string{"--peers", "a", "--namespace", "a.b"}, `namespace "a.b" must be a DNS label`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "peers")
			_, _, err := run(t, append([]string{"certs", "generate", "--dir", dir}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if _, err := os.Stat(dir); err == nil {
				t.Error("a refused run wrote the directory")
			}
		})
	}
}

// `manifests --replicas 3` prints a StatefulSet of three and says which
// peer Secrets to make; the default stays one Deployment; an even count
// is refused.
func TestManifestsReplicas(t *testing.T) {
	base := []string{"manifests", "--ca-file", "", "--registry", "ghcr.io"}
	out, stderr, err := run(t, append(base, "--replicas", "3")...)
	if err != nil {
		t.Fatal(err)
	}
	kinds, byKind := documents(t, out)
	if slices.Contains(kinds, "Deployment") || !slices.Contains(kinds, "StatefulSet") || !slices.Contains(kinds, "PodDisruptionBudget") {
		t.Errorf("kinds %v", kinds)
	}
	var sts appsv1.StatefulSet
	if err := yaml.UnmarshalStrict([]byte(byKind["StatefulSet"]), &sts); err != nil || *sts.Spec.Replicas != 3 {
		t.Fatalf("StatefulSet: %v %+v", err, sts.Spec.Replicas)
	}
	for _, want := range []string{"--peers stagegate-0,stagegate-1,stagegate-2", "create secret generic stagegate-2-peer --from-file=certs/peers/stagegate-2/"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	out, stderr, err = run(t, base...)
	if err != nil {
		t.Fatal(err)
	}
	if kinds, _ := documents(t, out); !slices.Contains(kinds, "Deployment") || slices.Contains(kinds, "StatefulSet") || strings.Contains(stderr, "peer") {
		t.Errorf("default: kinds %v, stderr %s", kinds, stderr)
	}
	if _, _, err := run(t, append(base, "--replicas", "2")...); err == nil || !strings.Contains(err.Error(), "replicas 2 is even") {
		t.Errorf("--replicas 2: %v", err)
	}
}

// A --config with a cluster: section meant for the pods: its peer files
// and member ID are not this machine's, so manifests does not look for
// them; its timings are checked and taken.
func TestManifestsConfigClusterSection(t *testing.T) {
	dir := t.TempDir()
	write := func(stale string) string {
		p := filepath.Join(dir, "config-"+stale+".yaml")
		cfg := "cluster:\n  listen: \":8444\"\n  staleAfter: " + stale + "\n  members: [{id: stagegate-0, address: \"stagegate-0.stagegate-peers.stagegate-system.svc:8444\"}]\n" +
			"  tls: {caFile: /var/run/stagegate/peer/ca.crt, certFile: /var/run/stagegate/peer/tls.crt, keyFile: /var/run/stagegate/peer/tls.key}\n"
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	base := []string{"manifests", "--ca-file", "", "--registry", "ghcr.io"}
	out, _, err := run(t, append(base, "--replicas", "3", "--config", write("30s"))...)
	if err != nil {
		t.Fatal(err)
	}
	_, byKind := documents(t, out)
	if !strings.Contains(byKind["ConfigMap"], "staleAfter: 30s") || !strings.Contains(byKind["ConfigMap"], "id: stagegate-2") {
		t.Errorf("the config's timings or the manifests' members are missing:\n%s", byKind["ConfigMap"])
	}
	if _, _, err := run(t, append(base, "--config", write("30s"))...); err == nil || !strings.Contains(err.Error(), "give --replicas") {
		t.Errorf("one replica with a cluster section: %v", err)
	}
	if _, _, err := run(t, append(base, "--replicas", "3", "--config", write("100ms"))...); err == nil || !strings.Contains(err.Error(), "cluster.staleAfter") {
		t.Errorf("a bad staleAfter: %v", err)
	}
}
