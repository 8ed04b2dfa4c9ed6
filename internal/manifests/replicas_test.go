package manifests

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	klabels "k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
)

func TestReplicasValidate(t *testing.T) {
	tests := []struct {
		name     string
		replicas int32
		service  string
		want     string // "" for valid
	}{
		{"long service, one replica", 1, strings.Repeat("s", 60), ""},
		{"long service", 3, strings.Repeat("s", 58), `the peers' Service "` + strings.Repeat("s", 58) + `-peers"`},
		{"service starting with a digit", 3, "1gate", `the peers' Service "1gate-peers"`},
		{"unset", 0, "", ""},
		{"one", 1, "", ""},
		{"three", 3, "", ""},
		{"seven", 7, "", ""},
		{"two", 2, "", "replicas 2 is even"},
		{"four", 4, "", "use 3 or 5"},
		{"negative", -1, "", "between 1 and 7"},
		{"nine", 9, "", "between 1 and 7"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Options{Stages: []string{"dev"}, Replicas: tt.replicas, Service: tt.service}.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want ErrInvalidOption with %q", err, tt.want)
			}
		})
	}
}

// haObjects are the objects of a three-replica installation with the
// defaults' config, by kind and name.
func haObjects(t *testing.T, o Options) (map[string]runtime.Object, []string) {
	t.Helper()
	byName := map[string]runtime.Object{}
	var kinds []string
	for _, obj := range Deployment(o) {
		gvk := obj.GetObjectKind().GroupVersionKind()
		name := obj.(metav1.Object).GetName()
		byName[gvk.Kind+"/"+name] = obj
		kinds = append(kinds, gvk.Kind)
	}
	return byName, kinds
}

func haOptions() Options {
	return Options{Stages: []string{"dev", "prod"}, Replicas: 3, Registries: []string{"ghcr.io"}}
}

// TestReplicated checks the objects of three replicas: what the issue
// asks of each, and that each member sees only its own peer key.
func TestReplicated(t *testing.T) {
	objs, kinds := haObjects(t, haOptions())
	for _, k := range []string{"Deployment", "PersistentVolumeClaim"} {
		if slices.Contains(kinds, k) {
			t.Errorf("a replicated installation has a %s", k)
		}
	}
	// The fences before the pods.
	if i, j := slices.Index(kinds, "NetworkPolicy"), slices.Index(kinds, "StatefulSet"); i < 0 || j < i || j != len(kinds)-1 {
		t.Errorf("kinds in order %v: the StatefulSet must come last, after the NetworkPolicies", kinds)
	}
	sts := objs["StatefulSet/stagegate"].(*appsv1.StatefulSet)
	spec := sts.Spec
	if *spec.Replicas != 3 || spec.PodManagementPolicy != appsv1.ParallelPodManagement ||
		spec.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || spec.ServiceName != "stagegate-peers" {
		t.Errorf("StatefulSet spec: replicas %d, %s, %s, service %q", *spec.Replicas, spec.PodManagementPolicy, spec.UpdateStrategy.Type, spec.ServiceName)
	}
	if !klabels.SelectorFromSet(spec.Selector.MatchLabels).Matches(klabels.Set(sts.Spec.Template.Labels)) {
		t.Error("the StatefulSet's selector does not match its pods")
	}
	var claims []string
	for _, c := range spec.VolumeClaimTemplates {
		claims = append(claims, c.Name)
		if !slices.Equal(c.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
			t.Errorf("claim %s: access modes %v", c.Name, c.Spec.AccessModes)
		}
	}
	if !slices.Equal(claims, []string{"data", "guard"}) {
		t.Errorf("claim templates %v, want data and guard", claims)
	}
	pod := spec.Template.Spec
	for _, v := range pod.Volumes {
		if v.PersistentVolumeClaim != nil {
			t.Errorf("volume %s names a claim; the templates provide it", v.Name)
		}
	}
	var hostSpread bool
	for _, c := range pod.TopologySpreadConstraints {
		sel, _ := metav1.LabelSelectorAsSelector(c.LabelSelector)
		if c.TopologyKey == corev1.LabelHostname && c.MaxSkew == 1 && c.WhenUnsatisfiable == corev1.DoNotSchedule && sel.Matches(klabels.Set(sts.Spec.Template.Labels)) {
			hostSpread = true
		}
	}
	if !hostSpread {
		t.Errorf("no spread over hostnames of the members: %+v", pod.TopologySpreadConstraints)
	}

	// Each member only sees its own key: the server mounts the copied
	// files alone, and the init container copies the pod's own.
	server := pod.Containers[0]
	mounts := map[string]string{}
	for _, m := range server.VolumeMounts {
		mounts[m.Name] = m.MountPath
	}
	if mounts["peer"] != PeerDir {
		t.Errorf("the server mounts its peer files at %q", mounts["peer"])
	}
	if _, ok := mounts["peer-secrets"]; ok {
		t.Error("the server mounts every member's peer Secret")
	}
	if !hasNodeID(server.Env) || !slices.ContainsFunc(server.Ports, func(p corev1.ContainerPort) bool { return p.ContainerPort == PeerPort }) {
		t.Errorf("server: env %v, ports %v", server.Env, server.Ports)
	}
	if server.ReadinessProbe == nil || server.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe %+v", server.ReadinessProbe)
	}
	if sp := server.StartupProbe; sp == nil || sp.HTTPGet.Path != "/healthz" || sp.PeriodSeconds*sp.FailureThreshold < 600 {
		t.Errorf("startup probe %+v: a member with a large ledger needs minutes to start", sp)
	}
	var copier *corev1.Container
	for i, c := range pod.InitContainers {
		if c.Name == "peer" {
			copier = &pod.InitContainers[i]
		}
	}
	if copier == nil || !hasNodeID(copier.Env) {
		t.Fatalf("no init container copying the member's peer files with its name: %+v", pod.InitContainers)
	}
	for _, v := range pod.Volumes {
		if v.Name != "peer-secrets" {
			continue
		}
		var secrets []string
		for _, s := range v.Projected.Sources {
			secrets = append(secrets, s.Secret.Name)
			if s.Secret.Optional == nil || !*s.Secret.Optional {
				t.Errorf("Secret %s is required: a member would wait for the others' Secrets", s.Secret.Name)
			}
			for _, it := range s.Secret.Items {
				if id := strings.TrimSuffix(s.Secret.Name, "-peer"); !strings.HasPrefix(it.Path, id+"/") {
					t.Errorf("Secret %s's %s lands at %s, outside %s/", s.Secret.Name, it.Key, it.Path, id)
				}
			}
		}
		if !slices.Equal(secrets, []string{"stagegate-0-peer", "stagegate-1-peer", "stagegate-2-peer"}) {
			t.Errorf("peer Secrets %v", secrets)
		}
	}

	peers := objs["Service/stagegate-peers"].(*corev1.Service)
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses ||
		len(peers.Spec.Ports) != 1 || peers.Spec.Ports[0].Port != PeerPort || !klabels.SelectorFromSet(peers.Spec.Selector).Matches(klabels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("peers Service: %+v", peers.Spec)
	}
	if _, ok := objs["Service/stagegate"]; !ok {
		t.Error("no webhook/API Service")
	}
	pdb := objs["PodDisruptionBudget/stagegate"].(*policyv1.PodDisruptionBudget)
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 ||
		!klabels.SelectorFromSet(pdb.Spec.Selector.MatchLabels).Matches(klabels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("PodDisruptionBudget: %+v", pdb.Spec)
	}
	np := objs["NetworkPolicy/stagegate-peers"].(*networkingv1.NetworkPolicy)
	if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != int(PeerPort) {
		t.Fatalf("peer NetworkPolicy: %+v", np.Spec)
	}
	from := np.Spec.Ingress[0].From
	if len(from) != 1 || from[0].NamespaceSelector != nil || from[0].IPBlock != nil ||
		!klabels.SelectorFromSet(from[0].PodSelector.MatchLabels).Matches(klabels.Set(sts.Spec.Template.Labels)) {
		t.Errorf("the peer port is open to more than the members: %+v", from)
	}
	// The webhook's policy does not open the peer port.
	for _, r := range objs["NetworkPolicy/stagegate"].(*networkingv1.NetworkPolicy).Spec.Ingress {
		for _, p := range r.Ports {
			if p.Port.IntValue() == int(PeerPort) {
				t.Error("the webhook's NetworkPolicy opens the peer port")
			}
		}
	}
}

func hasNodeID(env []corev1.EnvVar) bool {
	return slices.ContainsFunc(env, func(e corev1.EnvVar) bool {
		return e.Name == NodeIDEnv && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name"
	})
}

// The config's cluster: section names every member at the address that
// its certificate from `stagegate certs generate --peers` (defaults)
// carries, and the whole config is one the server accepts as that member.
func TestReplicatedConfig(t *testing.T) {
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	o := haOptions()
	srv, err := ServerFiles(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	var whole map[string]any
	if err := yaml.Unmarshal(srv.Config, &whole); err != nil {
		t.Fatal(err)
	}
	section, err := yaml.Marshal(whole["cluster"])
	if err != nil {
		t.Fatal(err)
	}
	var c clusterSection
	if err := yaml.UnmarshalStrict(section, &c); err != nil {
		t.Fatalf("cluster section:\n%s\n%v", section, err)
	}
	if c.Listen != ":8444" || c.DataDir != RaftDir || !strings.HasPrefix(c.DataDir, DataDir+"/") ||
		c.TLS.KeyFile != PeerDir+"/tls.key" || c.StaleAfter.Std() != 10*time.Second || c.RevocationWait.Std() != 5*time.Second {
		t.Errorf("cluster section %+v", c)
	}
	if len(c.Members) != 3 {
		t.Fatalf("members %+v", c.Members)
	}

	// The certificates of the CLI's defaults.
	dir := t.TempDir()
	if err := pki.GeneratePeers(dir, pki.PeerOptions{IDs: MemberIDs(o), Service: "stagegate-peers", Namespace: DefaultNamespace}); err != nil {
		t.Fatal(err)
	}

	// The server reads the whole file strictly and takes the member's ID
	// from the environment. Its Validate checks that the peer files
	// exist: they are moved to where this test has them, as the pod has
	// them under PeerDir.
	served, err := config.Load(writeFile(t, "config.yaml", string(srv.Config)))
	if err != nil {
		t.Fatal(err)
	}
	config.FromEnv(func(k string) (string, bool) {
		if k == config.ClusterNodeIDEnv {
			return "stagegate-1", true
		}
		return "", false
	}).Apply(served)
	if served.Cluster == nil {
		t.Fatal("the server reads no cluster section")
	}
	member := filepath.Join(dir, "stagegate-1")
	served.Cluster.TLS = config.PeerTLS{
		CAFile: filepath.Join(member, pki.CACert), CertFile: filepath.Join(member, pki.TLSCert), KeyFile: filepath.Join(member, pki.TLSKey),
	}
	if err := served.Validate(); err != nil {
		t.Fatal(err)
	}
	if self := served.Cluster.Self(); self.ID != "stagegate-1" || self.Address != c.Members[1].Address || self.NonVoter {
		t.Errorf("the server sees itself as %+v", self)
	}
	if served.Cluster.DataDir != RaftDir || served.Cluster.StaleAfter.Std() != 10*time.Second {
		t.Errorf("the server reads dataDir %q, staleAfter %v", served.Cluster.DataDir, served.Cluster.StaleAfter.Std())
	}

	// Each member's certificate verifies for the address it is dialled at.
	caPEM, _ := os.ReadFile(filepath.Join(dir, pki.CACert))
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	for i, m := range c.Members {
		if m.ID != MemberIDs(o)[i] {
			t.Errorf("member %d is %q", i, m.ID)
		}
		b, err := os.ReadFile(filepath.Join(dir, m.ID, pki.TLSCert))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		cert, _ := x509.ParseCertificate(blk.Bytes)
		host, port, _ := strings.Cut(m.Address, ":")
		if port != "8444" {
			t.Errorf("member %s port %q", m.ID, port)
		}
		if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err != nil {
			t.Errorf("member %s at %s: %v", m.ID, m.Address, err)
		}
	}
}

// The init container's script, run by a real sh with the paths moved to
// a temporary directory: it copies the pod's own files only, 0600, and
// fails naming the member when its files are not there.
func TestPeerCopyScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		cannotRun(t, "no sh on PATH", "install a POSIX shell")
	}
	var script string
	for _, c := range memberPodSpec(haOptions().withDefaults(), &Server{Guard: true}).InitContainers {
		if c.Name == "peer" {
			script = c.Command[2]
		}
	}
	root := t.TempDir()
	secrets, dst := filepath.Join(root, "secrets"), filepath.Join(root, "peer")
	script = strings.ReplaceAll(strings.ReplaceAll(script, secretPeers, secrets), PeerDir, dst)
	for _, id := range []string{"stagegate-0", "stagegate-1"} {
		if err := os.MkdirAll(filepath.Join(secrets, id), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{pki.CACert, pki.TLSCert, pki.TLSKey} {
			if err := os.WriteFile(filepath.Join(secrets, id, f), []byte(id+"/"+f), 0o440); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(id string) (string, error) {
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = []string{NodeIDEnv + "=" + id, "PATH=" + os.Getenv("PATH")}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		return out.String(), err
	}
	if out, err := run("stagegate-1"); err != nil {
		t.Fatalf("copy: %v\n%s", err, out)
	}
	ents, _ := os.ReadDir(dst)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
		b, _ := os.ReadFile(filepath.Join(dst, e.Name()))
		if string(b) != "stagegate-1/"+e.Name() {
			t.Errorf("%s holds %q, not stagegate-1's", e.Name(), b)
		}
		if fi, _ := e.Info(); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", e.Name(), fi.Mode().Perm())
		}
	}
	if !slices.Equal(names, []string{"ca.crt", "tls.crt", "tls.key"}) {
		t.Errorf("copied %v", names)
	}
	if out, err := run("stagegate-9"); err == nil || !strings.Contains(out, "no peer files for member stagegate-9") {
		t.Errorf("missing member: %v, %q", err, out)
	}
}

// TestDeployHA keeps deploy/ha, the three-replica kustomize base, in step
// with `stagegate manifests --replicas 3 --ca-file "" --registry
// registry.example.internal`, and the single-replica default unchanged
// (TestDeployBase).
func TestDeployHA(t *testing.T) {
	var b bytes.Buffer
	b.WriteString(haHeader)
	if err := Write(&b, All(Options{Stages: config.Default().StageNames(), Replicas: 3, Registries: []string{PlaceholderRegistry}})...); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join(root, "deploy/ha/stagegate.yaml"), b.Bytes())
}

const haHeader = `# Generated by stagegate; do not edit. Regenerate with
#   go run ./cmd/stagegate manifests --replicas 3 --ca-file "" \
#     --registry registry.example.internal > deploy/ha/stagegate.yaml
# or: go test ./internal/manifests -run TestDeployHA -update
# Three replicas in a StatefulSet, replicating the ledger over the peer port
# (8444, mutual TLS). Each member waits for its Secret <member>-peer:
#   stagegate certs generate --peers stagegate-0,stagegate-1,stagegate-2
#   kubectl -n stagegate-system create secret generic stagegate-0-peer --from-file=certs/peers/stagegate-0/
#   (and so on for stagegate-1, stagegate-2)
# Everything else is as in deploy/base (see its header): caBundle unset, the
# ConfigMap stagegate-apiserver-ca and the Secrets stagegate-tls,
# stagegate-keys and stagegate-tokens to create, a placeholder registry.
`

// TestReplicatedGolden pins a replicated installation with options that
// differ from the defaults (namespace, service, five members).
func TestReplicatedGolden(t *testing.T) {
	srv := &Server{
		Config: []byte("listen: :8443\nstages:\n- name: dev\n"),
		Guard:  true,
	}
	var err error
	o := Options{Stages: []string{"dev"}, Namespace: "gate", Service: "sg", Replicas: 5, Image: "example.com/sg:1", Server: srv}
	if srv.Config, err = withCluster(srv.Config, o.withDefaults(), nil); err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	objs := []any{}
	for _, obj := range Deployment(o) {
		objs = append(objs, obj)
	}
	if err := Write(&b, objs...); err != nil {
		t.Fatal(err)
	}
	golden(t, filepath.Join("testdata", "install-replicated.yaml"), b.Bytes())
}

// Non-voters are members after the voters: the StatefulSet runs all,
// the config marks the last ones, and the peer Secrets cover them too.
func TestNonVoters(t *testing.T) {
	o := haOptions()
	o.NonVoters = 2
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	srv, err := ServerFiles(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	// As the server reads it.
	served, err := config.Load(writeFile(t, "config.yaml", string(srv.Config)))
	if err != nil {
		t.Fatal(err)
	}
	var voters, nonVoters []string
	for _, m := range served.Cluster.Members {
		if m.NonVoter {
			nonVoters = append(nonVoters, m.ID)
		} else {
			voters = append(voters, m.ID)
		}
	}
	if !slices.Equal(voters, []string{"stagegate-0", "stagegate-1", "stagegate-2"}) || !slices.Equal(nonVoters, []string{"stagegate-3", "stagegate-4"}) {
		t.Errorf("voters %v, non-voters %v", voters, nonVoters)
	}
	o.Server = srv
	objs, _ := haObjects(t, o)
	sts := objs["StatefulSet/stagegate"].(*appsv1.StatefulSet)
	if *sts.Spec.Replicas != 5 {
		t.Errorf("StatefulSet of %d, want 5", *sts.Spec.Replicas)
	}
	var secrets int
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.Projected != nil {
			secrets = len(v.Projected.Sources)
		}
	}
	if secrets != 5 {
		t.Errorf("%d peer Secrets projected, want 5", secrets)
	}

	for _, tt := range []struct {
		name               string
		replicas, nonVoter int32
		want               string
	}{
		{"without a cluster", 1, 1, "non-voters 1 need replicas 3 or more"},
		{"negative", 3, -1, "non-voters -1 must be between 0 and 16"},
		{"too many", 3, 17, "non-voters 17 must be between 0 and 16"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Options{Stages: []string{"dev"}, Replicas: tt.replicas, NonVoters: tt.nonVoter}.Validate()
			if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// A config's own cluster section lends its timings to the replicated
// config; its members, addresses and files give way to the StatefulSet's.
// For one replica it is refused.
func TestConfigClusterSection(t *testing.T) {
	cfg := config.Default()
	cfg.Cluster = &config.Cluster{
		NodeID: "a", Listen: ":7000", DataDir: "/srv/raft",
		Members:        []config.Member{{ID: "a", Address: "a.example:7000"}},
		TLS:            config.PeerTLS{CAFile: "/srv/ca.crt", CertFile: "/srv/tls.crt", KeyFile: "/srv/tls.key"},
		StaleAfter:     config.Duration(30 * time.Second),
		RevocationWait: config.Duration(2 * time.Second),
	}
	if _, err := ServerFiles(cfg, Options{Registries: []string{"ghcr.io"}}); !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "give --replicas") {
		t.Errorf("one replica with a cluster section: %v", err)
	}
	srv, err := ServerFiles(cfg, haOptions())
	if err != nil {
		t.Fatal(err)
	}
	served, err := config.Load(writeFile(t, "config.yaml", string(srv.Config)))
	if err != nil {
		t.Fatal(err)
	}
	c := served.Cluster
	if c.StaleAfter.Std() != 30*time.Second || c.RevocationWait.Std() != 2*time.Second {
		t.Errorf("timings %v, %v: not the config's", c.StaleAfter.Std(), c.RevocationWait.Std())
	}
	if c.NodeID != "" || c.Listen != ":8444" || c.DataDir != RaftDir || len(c.Members) != 3 || c.Members[0].ID != "stagegate-0" || c.TLS.CAFile != PeerDir+"/ca.crt" {
		t.Errorf("the config's own members, listener or files survived: %+v", c)
	}
}

// --adopt-ledger writes cluster.adopt for member 0, which the server
// reads; with one replica there is nothing to adopt into.
func TestAdoptLedger(t *testing.T) {
	cfg := config.Default()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		adopt bool
		want  string
	}{
		"adopting":      {adopt: true, want: "stagegate-0"},
		"a new cluster": {want: ""},
	} {
		t.Run(name, func(t *testing.T) {
			o := haOptions()
			o.AdoptLedger = tc.adopt
			srv, err := ServerFiles(cfg, o)
			if err != nil {
				t.Fatal(err)
			}
			served, err := config.Load(writeFile(t, "config.yaml", string(srv.Config)))
			if err != nil {
				t.Fatal(err)
			}
			if served.Cluster == nil || served.Cluster.Adopt != tc.want {
				t.Fatalf("the server reads cluster %+v, want adopt %q", served.Cluster, tc.want)
			}
		})
	}
	err := Options{Stages: []string{"dev"}, Replicas: 1, AdoptLedger: true}.Validate()
	if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), "adopt-ledger needs replicas 3") {
		t.Fatalf("Validate = %v, want the refusal of adopt-ledger on one replica", err)
	}
}
