package manifests

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/pki"
)

// Replicated installations (Options.Replicas above 1) run a StatefulSet
// whose members form one Raft cluster over the peer port.
const (
	// PeerPort is the container port of the peers' listener (config
	// cluster.listen): Raft and write forwarding, mutual TLS.
	PeerPort = int32(8444)
	// PeerDir holds the member's own peer files (ca.crt, tls.crt,
	// tls.key), copied there by the "peer" init container.
	PeerDir = "/var/run/stagegate/peer"
	// RaftDir is the Raft log and snapshots (config cluster.dataDir), on
	// the member's data volume next to its ledger.
	RaftDir = DataDir + "/raft"
	// NodeIDEnv names the member; the pod sets it from its own name
	// (metadata.name), which is its member ID.
	NodeIDEnv = "STAGEGATE_CLUSTER_NODE_ID"
	// MaxReplicas bounds Options.Replicas: every voter takes part in
	// every commit, so more voters make writes slower, not safer.
	MaxReplicas = 7
	// MaxNonVoters bounds Options.NonVoters: each is sent every entry
	// by the leader, though no commit waits for one.
	MaxNonVoters = 16

	secretPeers  = "/var/run/secrets/stagegate/peers"
	peerPortName = "peer"
)

func (o Options) replicated() bool { return o.Replicas > 1 }

// peersName is the headless Service that gives each member its DNS name,
// and the NetworkPolicy of the peer port.
func peersName(o Options) string { return o.Service + "-peers" }

// MemberIDs are the members of o's cluster, voters then non-voters: the
// StatefulSet's pod names.
func MemberIDs(o Options) []string {
	o = o.withDefaults()
	n := max(o.Replicas, 1) + max(o.NonVoters, 0)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%d", o.Service, i)
	}
	return ids
}

// validReplicas refuses counts a Raft cluster should not run with.
func validReplicas(o Options) error {
	switch r := o.Replicas; {
	case r < 0 || r > MaxReplicas:
		return fmt.Errorf("manifests: %w: replicas %d must be between 1 and %d", ErrInvalidOption, r, MaxReplicas)
	case r > 1 && r%2 == 0:
		return fmt.Errorf("manifests: %w: replicas %d is even: a quorum of %d survives as few failures as %d replicas do; use %d or %d",
			ErrInvalidOption, r, r/2+1, r-1, r-1, r+1)
	case o.NonVoters < 0 || o.NonVoters > MaxNonVoters:
		return fmt.Errorf("manifests: %w: non-voters %d must be between 0 and %d", ErrInvalidOption, o.NonVoters, MaxNonVoters)
	case o.AdoptLedger && r <= 1:
		return fmt.Errorf("manifests: %w: adopt-ledger needs replicas 3 or more: one server keeps its ledger as it is", ErrInvalidOption)
	case o.NonVoters > 0 && r <= 1:
		return fmt.Errorf("manifests: %w: non-voters %d need replicas 3 or more: one server has no cluster to join", ErrInvalidOption, o.NonVoters)
	case r <= 1:
		return nil
	}
	// The member IDs are pod names and DNS labels of the peers' names,
	// and the peers' Service name is a Service's: a long --service would
	// otherwise fail only when the API server or the server refuses it.
	if errs := validation.IsDNS1035Label(peersName(o)); len(errs) > 0 {
		return fmt.Errorf("manifests: %w: service %q: the peers' Service %q: %s", ErrInvalidOption, o.Service, peersName(o), strings.Join(errs, "; "))
	}
	for _, id := range MemberIDs(o) {
		if errs := validation.IsDNS1123Label(id); len(errs) > 0 {
			return fmt.Errorf("manifests: %w: service %q: member ID %q: %s", ErrInvalidOption, o.Service, id, strings.Join(errs, "; "))
		}
	}
	return nil
}

// clusterSection is the config's cluster: section as the manifests write
// it: config.Cluster without nodeID, which each pod sets through
// NodeIDEnv so that one ConfigMap serves all. The tests read it back with
// the server's config.
type clusterSection struct {
	Listen         string          `json:"listen"`
	DataDir        string          `json:"dataDir"`
	Members        []clusterMember `json:"members"`
	TLS            clusterTLS      `json:"tls"`
	StaleAfter     config.Duration `json:"staleAfter"`
	RevocationWait config.Duration `json:"revocationWait"`
	Adopt          string          `json:"adopt,omitempty"`
}

type clusterMember struct {
	ID       string `json:"id"`
	Address  string `json:"address"`
	NonVoter bool   `json:"nonVoter,omitempty"`
}

type clusterTLS struct {
	CAFile   string `json:"caFile"`
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
}

// cluster is the section of o's members. The timings are from the
// config's own section if it has one (file), else the server's defaults,
// written out so that whoever reads the ConfigMap sees them; the rest is
// the StatefulSet's to say.
func cluster(o Options, file *config.Cluster) clusterSection {
	c := clusterSection{
		Listen:  fmt.Sprintf(":%d", PeerPort),
		DataDir: RaftDir,
		TLS: clusterTLS{
			CAFile: PeerDir + "/" + pki.CACert, CertFile: PeerDir + "/" + pki.TLSCert, KeyFile: PeerDir + "/" + pki.TLSKey,
		},
		StaleAfter:     config.Duration(config.DefaultStaleAfter),
		RevocationWait: config.Duration(config.DefaultRevocationWait),
	}
	if file != nil && file.StaleAfter != 0 {
		c.StaleAfter = file.StaleAfter
	}
	if file != nil && file.RevocationWait != 0 {
		c.RevocationWait = file.RevocationWait
	}
	if file != nil {
		c.Adopt = file.Adopt
	}
	if o.AdoptLedger {
		c.Adopt = MemberIDs(o)[0]
	}
	for i, id := range MemberIDs(o) {
		host := pki.PeerHosts(id, peersName(o), o.Namespace)[0]
		c.Members = append(c.Members, clusterMember{ID: id, Address: fmt.Sprintf("%s:%d", host, PeerPort), NonVoter: int32(i) >= o.Replicas})
	}
	return c
}

// withCluster sets the cluster: section of the config text b, with the
// timings of file (the config's own section; nil for the defaults). It
// goes through a map, so that the section replaces whatever cluster key
// the config marshalled.
func withCluster(b []byte, o Options, file *config.Cluster) ([]byte, error) {
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifests: server config: %w", err)
	}
	m["cluster"] = cluster(o, file)
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("manifests: server config: %w", err)
	}
	return out, nil
}

// replicatedObjects are what runs a replicated server, in apply order
// after the ConfigMaps: the Services, the NetworkPolicies, the
// PodDisruptionBudget and the StatefulSet. There are no claims of their
// own: the StatefulSet makes one pair per member from its templates.
//
// Each member's peer files come from the Secret <id>-peer (keys ca.crt,
// tls.crt, tls.key; `stagegate certs generate --peers` writes them),
// referenced, never generated.
func replicatedObjects(o Options, srv *Server) []runtime.Object {
	return []runtime.Object{
		service(o), peersService(o),
		NetworkPolicy(o), peersNetworkPolicy(o),
		disruptionBudget(o),
		statefulSet(o, srv),
	}
}

// peersService is headless: it gives each member the DNS name of the
// members list, and publishes members that are not ready, since a member
// that is joining or catching up is not ready until the others have
// reached it.
func peersService(o Options) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(o, peersName(o), "webhook"),
		Spec: corev1.ServiceSpec{
			ClusterIP:                corev1.ClusterIPNone,
			PublishNotReadyAddresses: true,
			Selector:                 selector(o),
			Ports: []corev1.ServicePort{{
				Name: peerPortName, Port: PeerPort, TargetPort: intstr.FromString(peerPortName), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
}

// peersNetworkPolicy lets the peer port be reached from the members only.
// NetworkPolicies add up: NetworkPolicy(o) already isolates these pods and
// opens the webhook's and the API's ports; this one adds the peer port,
// for the StatefulSet's own pods and nothing else. Mutual TLS still
// authenticates every peer: the policy only narrows who may try.
func peersNetworkPolicy(o Options) *networkingv1.NetworkPolicy {
	tcp := corev1.ProtocolTCP
	port := intstr.FromInt32(PeerPort)
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta(o, peersName(o), "webhook"),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector(o)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
			Ingress: []networkingv1.NetworkPolicyIngressRule{{
				Ports: []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &port}},
				From:  []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{MatchLabels: selector(o)}}},
			}},
		},
	}
}

// disruptionBudget lets a drain take one member at a time. At three
// replicas that is minAvailable 2, a quorum; at five or seven it keeps
// more than a quorum, so that a failure during a drain does not also cost
// the quorum. unhealthyPodEvictionPolicy stays at its default
// (IfHealthyBudget): when members are already not ready, the cluster is
// degraded, and a drain should wait rather than take another.
func disruptionBudget(o Options) *policyv1.PodDisruptionBudget {
	one := intstr.FromInt32(1)
	return &policyv1.PodDisruptionBudget{
		TypeMeta:   metav1.TypeMeta{APIVersion: "policy/v1", Kind: "PodDisruptionBudget"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		Spec: policyv1.PodDisruptionBudgetSpec{
			MaxUnavailable: &one,
			Selector:       &metav1.LabelSelector{MatchLabels: selector(o)},
		},
	}
}

func claimTemplate(o Options, name, size string) corev1.PersistentVolumeClaim {
	return corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels(o, "webhook")},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

// Claim templates' names, which are also the pod's volume names: the
// StatefulSet makes the claims data-<id> and guard-<id>.
const (
	dataVolume  = "data"
	guardVolume = "guard"
)

func statefulSet(o Options, srv *Server) *appsv1.StatefulSet {
	// The non-voters are the highest ordinals: scaling down, or a
	// rolling update (which starts there), reaches them first.
	replicas := int32(len(MemberIDs(o)))
	claims := []corev1.PersistentVolumeClaim{claimTemplate(o, dataVolume, "1Gi")}
	if srv.Guard {
		// Each member's own guard: a member's checkpoint is of its own
		// ledger, and a copy of its data volume must not carry it.
		claims = append(claims, claimTemplate(o, guardVolume, "16Mi"))
	}
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		Spec: appsv1.StatefulSetSpec{
			Replicas:    &replicas,
			Selector:    &metav1.LabelSelector{MatchLabels: selector(o)},
			ServiceName: peersName(o),
			// Parallel: a member is ready only once it is in contact with
			// a leader, and there is none until a quorum runs. OrderedReady
			// would wait for member 0 to be ready before creating member 1,
			// forever.
			PodManagementPolicy: appsv1.ParallelPodManagement,
			// One member at a time, highest ordinal first, each waiting
			// for the one before to be ready (caught up) again.
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
			// A member's claims are its ledger: neither deleting the
			// StatefulSet nor scaling it down deletes them.
			PersistentVolumeClaimRetentionPolicy: &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
				WhenDeleted: appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
				WhenScaled:  appsv1.RetainPersistentVolumeClaimRetentionPolicyType,
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      labels(o, "webhook"),
					Annotations: map[string]string{ConfigHashAnnotation: srv.hash()},
				},
				Spec: memberPodSpec(o, srv),
			},
			VolumeClaimTemplates: claims,
		},
	}
}

// memberPodSpec is the single server's pod, with the claims of the
// StatefulSet's templates, the member's peer files and name, and spread
// over nodes.
func memberPodSpec(o Options, srv *Server) corev1.PodSpec {
	spec := podSpec(o, srv)
	// The StatefulSet adds the volumes of its claim templates, by name.
	vols := spec.Volumes[:0]
	for _, v := range spec.Volumes {
		if v.Name != dataVolume && v.Name != guardVolume {
			vols = append(vols, v)
		}
	}
	spec.Volumes = vols
	// A StatefulSet's pods share one template, so the template cannot
	// name each pod's own Secret. All members' Secrets are projected into
	// the "peer-secrets" volume, which only the init container mounts: it
	// copies the files of its own member (the pod's name) into the
	// memory-backed "peer" volume, mode 0600 and owned by the server's
	// user, and the server mounts only that. So the server process, and
	// whatever it runs, never sees another member's key; the kubelet does
	// hold all of them on the pod's node, as it holds every Secret its
	// pods mount. One Secret per member, not one for all, so that a
	// member's certificate is renewed or revoked on its own.
	secretMode := int32(0o440)
	optional := true
	var sources []corev1.VolumeProjection
	for _, id := range MemberIDs(o) {
		var items []corev1.KeyToPath
		for _, k := range []string{pki.CACert, pki.TLSCert, pki.TLSKey} {
			items = append(items, corev1.KeyToPath{Key: k, Path: id + "/" + k})
		}
		sources = append(sources, corev1.VolumeProjection{Secret: &corev1.SecretProjection{
			LocalObjectReference: corev1.LocalObjectReference{Name: pki.PeerSecretName(id)},
			Items:                items,
			// Each member needs its own Secret only: optional, so that
			// one member's missing Secret keeps no other from starting,
			// and the init container names the member whose files are
			// missing rather than the kubelet a Secret.
			Optional: &optional,
		}})
	}
	spec.Volumes = append(spec.Volumes,
		corev1.Volume{Name: "peer-secrets", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			Sources: sources, DefaultMode: &secretMode,
		}}},
		corev1.Volume{Name: "peer", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi")),
		}}},
	)
	nodeID := corev1.EnvVar{Name: NodeIDEnv, ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"},
	}}
	copyPeer := spec.InitContainers[0]
	copyPeer.Name = "peer"
	copyPeer.Env = []corev1.EnvVar{nodeID}
	copyPeer.Command = []string{"sh", "-c", `src=` + secretPeers + `/"$` + NodeIDEnv + `"
if [ ! -d "$src" ]; then echo "no peer files for member $` + NodeIDEnv + ` in the peer Secrets" >&2; exit 1; fi
cp -L "$src/` + pki.CACert + `" "$src/` + pki.TLSCert + `" "$src/` + pki.TLSKey + `" ` + PeerDir + `/ && chmod 0600 ` + PeerDir + `/*`}
	copyPeer.VolumeMounts = []corev1.VolumeMount{
		{Name: "peer-secrets", MountPath: secretPeers, ReadOnly: true},
		{Name: "peer", MountPath: PeerDir},
	}
	spec.InitContainers = append(spec.InitContainers, copyPeer)

	c := &spec.Containers[0]
	// serve re-hashes every entry of its ledger before it listens (about
	// 2 s per 10^5 entries): the liveness probe alone (30 s) would kill a
	// member with a large ledger, in a loop, before it ever answered.
	// Liveness starts once this answers, within 15 minutes. (A snapshot
	// install happens later, while /healthz answers and /readyz does
	// not.)
	c.StartupProbe = probe("/healthz", 5)
	c.StartupProbe.FailureThreshold = 180
	c.Env = append(c.Env, nodeID)
	c.Ports = append(c.Ports, corev1.ContainerPort{Name: peerPortName, ContainerPort: PeerPort, Protocol: corev1.ProtocolTCP})
	c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "peer", MountPath: PeerDir, ReadOnly: true})

	// One member per node while there are nodes enough: losing a node then
	// costs one vote. DoNotSchedule with a skew of 1 still places all
	// members on a cluster of fewer nodes (evenly), rather than leave one
	// pending; zones are spread where the scheduler can.
	spread := func(key string, when corev1.UnsatisfiableConstraintAction) corev1.TopologySpreadConstraint {
		return corev1.TopologySpreadConstraint{
			MaxSkew: 1, TopologyKey: key, WhenUnsatisfiable: when,
			LabelSelector: &metav1.LabelSelector{MatchLabels: selector(o)},
		}
	}
	spec.TopologySpreadConstraints = []corev1.TopologySpreadConstraint{
		spread(corev1.LabelHostname, corev1.DoNotSchedule),
		spread(corev1.LabelTopologyZone, corev1.ScheduleAnyway),
	}
	return spec
}
