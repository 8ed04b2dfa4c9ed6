package manifests

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/stagegate/stagegate/internal/config"
)

// Paths inside the container. Each volume has a directory of its own:
// mounting one volume inside another read-only one (a ConfigMap or Secret)
// fails because the runtime cannot create the mount point.
const (
	ConfigDir   = "/etc/stagegate"
	PoliciesDir = "/etc/stagegate-policies"
	TrustDir    = "/etc/stagegate-trust"
	TLSDir      = "/var/run/secrets/stagegate/tls"
	TokensDir   = "/var/run/secrets/stagegate/tokens"
	KeysDir     = "/var/run/stagegate/keys"
	DataDir     = "/var/lib/stagegate"
	// GuardDir is the rollback guard's volume (ledger.checkpointFile): not
	// under DataDir, which the ledger refuses, and not an emptyDir, which
	// would forget the checkpoint with the pod.
	GuardDir   = "/var/lib/stagegate-guard"
	secretKeys = "/var/run/secrets/stagegate/keys"

	// APIServerCADir holds the CA of the API server's client certificate.
	APIServerCADir = "/etc/stagegate-apiserver-ca"
)

// Secret and ConfigMap keys the Deployment expects.
const (
	ConfigFile  = "config.yaml"
	TokensFile  = "tokens.yaml"
	PasswordKey = "password"
	// ClientCAKey is the key of the <service>-apiserver-ca ConfigMap, and
	// the file name under APIServerCADir.
	ClientCAKey = "ca.crt"
	// GuardFile is the checkpoint's file name under GuardDir.
	GuardFile = "checkpoint"
)

// CopyImage runs the init container that copies the signing keys out of
// their Secret (see Deployment). It needs only sh, cp and chmod.
const CopyImage = "busybox:1.37.0"

// nonRoot is the distroless "nonroot" user and group.
const nonRoot = int64(65532)

// Names of the objects, derived from the Service name so that two
// installations in one namespace do not collide.
func configMapName(o Options) string  { return o.Service + "-config" }
func policiesName(o Options) string   { return o.Service + "-policies" }
func trustName(o Options) string      { return o.Service + "-trust" }
func tlsSecretName(o Options) string  { return o.Service + "-tls" }
func keysSecretName(o Options) string { return o.Service + "-keys" }
func tokensSecretName(o Options) string {
	return o.Service + "-tokens"
}
func dataClaimName(o Options) string  { return o.Service + "-data" }
func guardClaimName(o Options) string { return o.Service + "-guard" }
func apiServerCAName(o Options) string {
	return o.Service + "-apiserver-ca"
}

func labels(o Options, component string) map[string]string {
	return map[string]string{
		"app.kubernetes.io/name":      o.Service,
		"app.kubernetes.io/component": component,
		"app.kubernetes.io/part-of":   "stagegate",
	}
}

func meta(o Options, name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: o.Namespace, Labels: labels(o, component)}
}

// Deployment returns the objects that run stagegate, in the order they can
// be applied: Namespace, ServiceAccount, ConfigMaps (config.yaml, the
// policies and trusted public files if o.Server has any, and the CA of
// the API server's client certificate if it is known),
// PersistentVolumeClaims (the ledger's, and the rollback guard's unless
// o.NoCheckpointGuard), Service, NetworkPolicy, Deployment. The
// NetworkPolicy comes before the pod, so that the pod is never unfenced.
// With o.Replicas above 1, the claims, Service, NetworkPolicy and
// Deployment give way to those of replicatedObjects.
//
// The Secrets are referenced but not generated, since they hold private
// material:
//   - <service>-tls (kubernetes.io/tls): tls.crt, tls.key;
//   - <service>-keys: cosign.key, cosign.pub, log.key, log.pub, and
//     optionally password (STAGEGATE_KEY_PASSWORD);
//   - <service>-tokens: tokens.yaml.
//
// So is the ConfigMap <service>-apiserver-ca (key ca.crt) when the server
// requires the API server's client certificate and o.Server has no CA.
func Deployment(o Options) []runtime.Object {
	o = o.withDefaults()
	srv := o.Server
	if srv == nil {
		// The defaults validate and name no file; a bad
		// WebhookClientCA is Validate's to report. They name no
		// registry either: the allow-list then names the placeholder,
		// and the server contacts no registry until it is replaced.
		d := config.Default()
		_ = d.Validate()
		so := o
		if len(so.Registries) == 0 && !so.NoRegistryAllowList {
			so.Registries = []string{PlaceholderRegistry}
		}
		var err error
		if srv, err = ServerFiles(d, so); err != nil {
			srv, _ = ServerFiles(d, Options{Registries: []string{PlaceholderRegistry}})
		}
	}
	objs := []runtime.Object{
		namespace(o),
		serviceAccount(o),
	}
	if srv.Continuous {
		objs = append(objs, continuousObjects(o)...)
	}
	if srv.Sources {
		objs = append(objs, sourcesObjects(o)...)
	}
	objs = append(objs,
		configMap(o, configMapName(o), map[string]string{ConfigFile: string(srv.Config)}),
	)
	if len(srv.Policies) > 0 {
		objs = append(objs, configMap(o, policiesName(o), srv.Policies))
	}
	if len(srv.Trust) > 0 {
		objs = append(objs, configMap(o, trustName(o), srv.Trust))
	}
	if srv.ClientAuth && srv.ClientCA != "" {
		objs = append(objs, configMap(o, apiServerCAName(o), map[string]string{ClientCAKey: srv.ClientCA}))
	}
	if o.replicated() {
		return append(objs, replicatedObjects(o, srv)...)
	}
	objs = append(objs, claim(o, dataClaimName(o), "1Gi"))
	if srv.Guard {
		// One signed checkpoint, well under a KiB; 16Mi is as small as
		// claims usually go (provisioners may round it up).
		objs = append(objs, claim(o, guardClaimName(o), "16Mi"))
	}
	return append(objs, service(o), NetworkPolicy(o), deployment(o, srv))
}
func namespace(o Options) *corev1.Namespace {
	ns := &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Namespace, Labels: labels(o, "namespace")},
	}
	// The pod below satisfies the restricted Pod Security Standard; saying
	// so keeps anything weaker out of the namespace.
	ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	return ns
}

func serviceAccount(o Options) *corev1.ServiceAccount {
	no := false
	return &corev1.ServiceAccount{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		// The webhook never calls the API server (DESIGN.md, "How the
		// webhook knows the stage"), so it gets no token and no RBAC;
		// continuous validation, when enabled, mounts one in the pod.
		AutomountServiceAccountToken: &no,
	}
}

func configMap(o Options, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: meta(o, name, "webhook"),
		Data:       data,
	}
}

func claim(o Options, name, size string) *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "PersistentVolumeClaim"},
		ObjectMeta: meta(o, name, "webhook"),
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			},
		},
	}
}

func service(o Options) *corev1.Service {
	return &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		Spec: corev1.ServiceSpec{
			Selector: selector(o),
			// 443 is the port the webhook configurations call (the API
			// server picks the client certificate by "<service>.<namespace>.svc",
			// port 443 omitted); the promotion API keeps its own number.
			Ports: []corev1.ServicePort{{
				Name:       webhookPortName,
				Port:       443,
				TargetPort: intstr.FromString(webhookPortName),
				Protocol:   corev1.ProtocolTCP,
			}, {
				Name:       apiPortName,
				Port:       ServingPort,
				TargetPort: intstr.FromString(apiPortName),
				Protocol:   corev1.ProtocolTCP,
			}},
		},
	}
}

// Names of the container ports, and of the Service ports that map to them.
const (
	webhookPortName = "webhook"
	apiPortName     = "api"
)

func selector(o Options) map[string]string {
	return map[string]string{"app.kubernetes.io/name": o.Service, "app.kubernetes.io/component": "webhook"}
}

// ConfigHashAnnotation on the pod template is a digest of the server's
// ConfigMaps: applying changed manifests then restarts the server, which
// reads them only at start.
const ConfigHashAnnotation = "stagegate.dev/config-hash"

func deployment(o Options, srv *Server) *appsv1.Deployment {
	// One replica, always: the ledger is a bbolt file, which takes an
	// exclusive lock and has a single writer. Recreate stops the old pod
	// (and releases the ReadWriteOnce volume and the lock) before the new
	// one starts; a rolling update would deadlock on both.
	replicas := int32(1)
	podLabels := labels(o, "webhook")
	return &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector(o)},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{
					Labels:      podLabels,
					Annotations: map[string]string{ConfigHashAnnotation: srv.hash()},
				},
				Spec: podSpec(o, srv),
			},
		},
	}
}

func podSpec(o Options, srv *Server) corev1.PodSpec {
	yes := true
	uid := nonRoot
	secretMode := int32(0o440)
	token := srv.Continuous || srv.Sources
	spec := corev1.PodSpec{
		ServiceAccountName: o.Service,
		// Only continuous validation and admission.sources call the
		// API server.
		AutomountServiceAccountToken: &token,
		SecurityContext: &corev1.PodSecurityContext{
			RunAsNonRoot: &yes,
			RunAsUser:    &uid,
			RunAsGroup:   &uid,
			// fsGroup makes the data and guard volumes writable and the
			// Secrets readable by the non-root user.
			FSGroup:        &uid,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
		// The signing package refuses private keys readable by anyone but
		// their owner, and Secret volumes are root-owned and group-readable
		// (fsGroup). This copies the keys into memory-backed storage owned
		// by the server's user, mode 0600.
		InitContainers: []corev1.Container{{
			Name:    "keys",
			Image:   CopyImage,
			Command: []string{"sh", "-c", "cp -L " + secretKeys + "/* " + KeysDir + "/ && chmod 0600 " + KeysDir + "/*"},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "keys-secret", MountPath: secretKeys, ReadOnly: true},
				{Name: "keys", MountPath: KeysDir},
			},
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("10m"),
					corev1.ResourceMemory: resource.MustParse("16Mi"),
				},
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")},
			},
			SecurityContext: containerSecurity(),
		}},
		Containers: []corev1.Container{{
			Name:  "stagegate",
			Image: o.Image,
			Args:  []string{"serve", "--config", ConfigDir + "/" + ConfigFile},
			Ports: []corev1.ContainerPort{
				{Name: apiPortName, ContainerPort: ServingPort, Protocol: corev1.ProtocolTCP},
				{Name: webhookPortName, ContainerPort: WebhookPort, Protocol: corev1.ProtocolTCP},
			},
			Env: []corev1.EnvVar{{
				Name: config.PasswordEnv,
				ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
					LocalObjectReference: corev1.LocalObjectReference{Name: keysSecretName(o)},
					Key:                  PasswordKey,
					// An unencrypted key needs no password.
					Optional: &yes,
				}},
			}},
			LivenessProbe:  probe("/healthz", 10),
			ReadinessProbe: probe("/readyz", 5),
			Resources: corev1.ResourceRequirements{
				Requests: corev1.ResourceList{
					corev1.ResourceCPU:    resource.MustParse("100m"),
					corev1.ResourceMemory: resource.MustParse("128Mi"),
				},
				Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
			},
			VolumeMounts: []corev1.VolumeMount{
				{Name: "config", MountPath: ConfigDir, ReadOnly: true},
				{Name: "tls", MountPath: TLSDir, ReadOnly: true},
				{Name: "tokens", MountPath: TokensDir, ReadOnly: true},
				{Name: "keys", MountPath: KeysDir, ReadOnly: true},
				{Name: "data", MountPath: DataDir},
				{Name: "tmp", MountPath: "/tmp"},
			},
			SecurityContext: containerSecurity(),
		}},
		Volumes: []corev1.Volume{
			{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
				LocalObjectReference: corev1.LocalObjectReference{Name: configMapName(o)},
			}}},
			{Name: "tls", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: tlsSecretName(o), DefaultMode: &secretMode,
			}}},
			{Name: "tokens", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: tokensSecretName(o), DefaultMode: &secretMode,
				Items: []corev1.KeyToPath{{Key: TokensFile, Path: TokensFile}},
			}}},
			{Name: "keys-secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
				SecretName: keysSecretName(o), DefaultMode: &secretMode,
				// Not the password: it reaches the server as an env var only.
				Items: []corev1.KeyToPath{
					{Key: "cosign.key", Path: "cosign.key"}, {Key: "cosign.pub", Path: "cosign.pub"},
					{Key: "log.key", Path: "log.key"}, {Key: "log.pub", Path: "log.pub"},
				},
			}}},
			{Name: "keys", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Mi")),
			}}},
			{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{
				ClaimName: dataClaimName(o),
			}}},
			{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				SizeLimit: ptr(resource.MustParse("64Mi")),
			}}},
		},
	}
	if srv.Guard {
		// A claim of its own, so that whoever restores an old copy of
		// the data volume does not restore the checkpoint with it.
		// ReadWriteOnce, like the data's: Recreate releases both.
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: "guard", VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: guardClaimName(o)},
		}})
		c := &spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "guard", MountPath: GuardDir})
	}
	// Optional ConfigMaps get a volume each: one directory per volume (see
	// the paths above).
	for _, cm := range []struct {
		volume, name, dir string
		mount             bool
	}{
		{"policies", policiesName(o), PoliciesDir, len(srv.Policies) > 0},
		{"trust", trustName(o), TrustDir, len(srv.Trust) > 0},
		// Mounted even when not generated: not optional, so the pod waits
		// for the operator's ConfigMap instead of starting without it.
		{"apiserver-ca", apiServerCAName(o), APIServerCADir, srv.ClientAuth},
	} {
		if !cm.mount {
			continue
		}
		spec.Volumes = append(spec.Volumes, corev1.Volume{Name: cm.volume, VolumeSource: corev1.VolumeSource{
			ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: cm.name}},
		}})
		c := &spec.Containers[0]
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: cm.volume, MountPath: cm.dir, ReadOnly: true})
	}
	return spec
}

func containerSecurity() *corev1.SecurityContext {
	no, yes := false, true
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		ReadOnlyRootFilesystem:   &yes,
		RunAsNonRoot:             &yes,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
	}
}

func probe(path string, period int32) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: path,
			// The API's port: the webhook's may require a client
			// certificate, which the kubelet does not have.
			Port:   intstr.FromString(apiPortName),
			Scheme: corev1.URISchemeHTTPS,
		}},
		PeriodSeconds:    period,
		TimeoutSeconds:   2,
		FailureThreshold: 3,
	}
}

func ptr[T any](v T) *T { return &v }
