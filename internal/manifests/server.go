package manifests

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/config"
)

// Server is what the in-cluster server is given besides its Secrets: its
// config.yaml, and the files that config names which are not secret.
type Server struct {
	// Config is config.yaml, with paths pointing at the Deployment's mounts.
	Config []byte
	// Policies are the Rego files of the config's policyDir, by file name.
	// Empty means the built-in policies.
	Policies map[string]string
	// Trust holds the public keys and CA certificates the config names
	// (evidenceKeys, registrySource.trustedKeys, registries[].caFile,
	// tls.clientCAFile), by the name the rewritten config gives them.
	Trust map[string]string
	// ClientAuth says that the config requires the API server's client
	// certificate on the webhook's listener: its admission.clientCAFile
	// is in the ConfigMap <service>-apiserver-ca, which the Deployment
	// then mounts.
	ClientAuth bool
	// ClientCA is that CA (PEM). Empty leaves the ConfigMap to the
	// operator; the pod does not start until it exists.
	ClientCA string
	// Evict says that some stage evicts the pods that violate it
	// (onViolation: evict): continuous validation's ClusterRole then
	// grants pods/eviction.
	Evict bool
	// Guard says that the config keeps the rollback guard's checkpoint
	// in GuardDir (ledger.checkpointFile): the Deployment then mounts the
	// PersistentVolumeClaim <service>-guard there.
	Guard bool
	// Continuous says that the config enables continuous validation: the
	// pod then gets its service account's token, and Deployment the CRD
	// and RBAC it needs.
	Continuous bool
	// Sources says that the config enables admission.sources: the pod
	// then gets its service account's token, and Deployment read access
	// to Flux's source objects.
	Sources bool
}

// maxConfigMap is below the API server's 1 MiB limit on a ConfigMap, with
// room for its metadata.
const maxConfigMap = 1000 << 10

// ServerFiles returns cfg as the in-cluster server sees it: listening on
// all interfaces, the webhook on a port of its own (WebhookPort) so that
// the NetworkPolicy can fence it apart from the promotion API, paths
// rewritten to the Deployment's mounts, and the contents of the non-secret
// files it names, read from the paths in cfg.
//
// The webhook requires the API server's client certificate unless
// o.NoWebhookClientAuth: its CA is o.WebhookClientCA, else the file cfg
// names as admission.clientCAFile, else one the operator puts in the
// ConfigMap.
//
// The registry allow-list is on unless o.NoRegistryAllowList, with the
// hosts of cfg's registries and o.Registries; with none, ServerFiles
// returns ErrNoRegistries. The rollback guard's checkpoint is kept in
// GuardDir, a volume of its own, unless o.NoCheckpointGuard. A config that
// asks for what the options turn off (admission.clientCAFile,
// registryAllowList, ledger.checkpointFile) is refused, not overruled in
// silence. cfg, which should have passed Validate, is not modified.
func ServerFiles(cfg *config.Config, o Options) (*Server, error) {
	c := *cfg
	srv := &Server{Trust: map[string]string{}}
	c.Listen = fmt.Sprintf(":%d", ServingPort)
	c.Admission.Listen = fmt.Sprintf(":%d", WebhookPort)
	c.Admission.ClientCAFile = ""
	// Turning the certificate off is a choice to make once, knowingly: a
	// config that asks for it is not overruled in silence.
	if o.NoWebhookClientAuth && cfg.Admission.ClientCAFile != "" {
		return nil, fmt.Errorf("manifests: %w: the config names admission.clientCAFile, but the webhook's client certificate is turned off", ErrInvalidOption)
	}
	if !o.NoWebhookClientAuth {
		srv.ClientAuth = true
		c.Admission.ClientCAFile = APIServerCADir + "/" + ClientCAKey
		srv.ClientCA = string(o.WebhookClientCA)
		if o.WebhookClientCA == nil && cfg.Admission.ClientCAFile != "" {
			b, err := os.ReadFile(cfg.Admission.ClientCAFile)
			if err != nil {
				return nil, fmt.Errorf("manifests: admission.clientCAFile: %w", err)
			}
			srv.ClientCA = string(b)
		}
		if srv.ClientCA != "" && !hasCertificate([]byte(srv.ClientCA)) {
			return nil, fmt.Errorf("manifests: %w: the webhook's client CA holds no PEM certificate", ErrInvalidOption)
		}
	}
	c.DataDir = DataDir
	// The members, their addresses and peer files are the StatefulSet's
	// (Options.Replicas): a config's own cluster section lends only its
	// timings, and one for a single replica would name members that do
	// not exist.
	if cfg.Cluster != nil && !o.replicated() {
		return nil, fmt.Errorf("manifests: %w: the config has a cluster section, but the manifests are for one replica: "+
			"give --replicas (the members, their addresses and peer files are the manifests' to write)", ErrInvalidOption)
	}
	c.Cluster = nil
	if c.ContinuousValidation.Enabled {
		srv.Continuous = true
		srv.Evict = len(c.EvictStages()) > 0
		// In the cluster: the pod's service account, and a Lease in the
		// pod's own namespace, where its Role grants them.
		c.ContinuousValidation.Kubeconfig = ""
		c.ContinuousValidation.Lease.Namespace = ""
	} else {
		// Off: its filled-in defaults would only be noise.
		c.ContinuousValidation = config.ContinuousValidation{}
	}
	if c.Admission.Sources.Enabled {
		srv.Sources = true
		// In the cluster: the pod's service account.
		c.Admission.Sources.Kubeconfig = ""
	} else {
		c.Admission.Sources = config.AdmissionSources{}
	}
	switch {
	case o.NoCheckpointGuard && cfg.Ledger.CheckpointFile != "":
		return nil, fmt.Errorf("manifests: %w: the config names ledger.checkpointFile, but the rollback guard is turned off", ErrInvalidOption)
	case !o.NoCheckpointGuard:
		// On a volume of its own: the ledger refuses a guard inside its
		// directory, and a copy of the data volume must not carry it.
		srv.Guard = true
		c.Ledger.CheckpointFile = GuardDir + "/" + GuardFile
	}
	c.TLS = config.TLS{CertFile: TLSDir + "/tls.crt", KeyFile: TLSDir + "/tls.key"}
	// Only Dir is kept: the server derives the four key paths from it.
	c.Keys = config.Keys{Dir: KeysDir}
	c.TokensFile = TokensDir + "/" + TokensFile

	// trust copies the file at path into srv.Trust and returns its path in
	// the container. name is unique per config field and index, so two
	// files with the same base name cannot collide.
	trust := func(name, path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("manifests: %s: %w", name, err)
		}
		key := configMapKey(name + "-" + filepath.Base(path))
		srv.Trust[key] = string(b)
		return TrustDir + "/" + key, nil
	}
	var err error
	if cfg.TLS.ClientCAFile != "" {
		if c.TLS.ClientCAFile, err = trust("client-ca", cfg.TLS.ClientCAFile); err != nil {
			return nil, err
		}
	}
	c.EvidenceKeys = slices.Clone(cfg.EvidenceKeys)
	for i, p := range c.EvidenceKeys {
		if c.EvidenceKeys[i], err = trust(fmt.Sprintf("evidence-%d", i), p); err != nil {
			return nil, err
		}
	}
	c.RegistrySource.TrustedKeys = slices.Clone(cfg.RegistrySource.TrustedKeys)
	for i, p := range c.RegistrySource.TrustedKeys {
		if c.RegistrySource.TrustedKeys[i], err = trust(fmt.Sprintf("trusted-%d", i), p); err != nil {
			return nil, err
		}
	}
	if o.NoRegistryAllowList && cfg.RegistryAllowList {
		return nil, fmt.Errorf("manifests: %w: the config sets registryAllowList, but the registry allow-list is turned off", ErrInvalidOption)
	}
	c.RegistryAllowList = !o.NoRegistryAllowList
	c.Registries = slices.Clone(cfg.Registries)
	for _, h := range o.Registries {
		if !slices.ContainsFunc(c.Registries, func(r config.Registry) bool { return strings.EqualFold(r.Host, h) }) {
			c.Registries = append(c.Registries, config.Registry{Host: h})
		}
	}
	if c.RegistryAllowList && len(c.Registries) == 0 {
		return nil, fmt.Errorf("manifests: %w: name the registries the server may contact (--registry, or registries: in the config), "+
			"or turn the allow-list off (--registry-allow-list=false) to let it contact any host", ErrNoRegistries)
	}
	for i, r := range c.Registries {
		if r.CAFile == "" {
			continue
		}
		if c.Registries[i].CAFile, err = trust(fmt.Sprintf("registry-%d", i), r.CAFile); err != nil {
			return nil, err
		}
	}
	if cfg.PolicyDir != "" {
		if srv.Policies, err = readPolicies(cfg.PolicyDir); err != nil {
			return nil, err
		}
		c.PolicyDir = PoliciesDir
	}
	for name, m := range map[string]map[string]string{"trusted files": srv.Trust, "policies": srv.Policies, "the webhook's client CA certificates": {ClientCAKey: srv.ClientCA}} {
		if n := size(m); n > maxConfigMap {
			return nil, fmt.Errorf("manifests: %w: %s take %d bytes, more than a ConfigMap holds", ErrInvalidOption, name, n)
		}
	}
	if srv.Config, err = yaml.Marshal(&c); err != nil {
		return nil, fmt.Errorf("manifests: server config: %w", err)
	}
	if o.replicated() {
		if srv.Config, err = withCluster(srv.Config, o.withDefaults(), cfg.Cluster); err != nil {
			return nil, err
		}
	}
	return srv, nil
}

// readPolicies reads the Rego files the server would load from dir: the
// *.rego files at its top level, without the tests.
func readPolicies(dir string) (map[string]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("manifests: policyDir: %w", err)
	}
	out := map[string]string{}
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || filepath.Ext(name) != ".rego" || strings.HasSuffix(name, "_test.rego") {
			continue
		}
		if configMapKey(name) != name {
			return nil, fmt.Errorf("manifests: %w: policy file name %q cannot be a ConfigMap key", ErrInvalidOption, name)
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("manifests: policyDir: %w", err)
		}
		out[name] = string(b)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("manifests: %w: policyDir %s holds no policy", ErrInvalidOption, dir)
	}
	return out, nil
}

var notKeyChar = regexp.MustCompile(`[^-._a-zA-Z0-9]`)

// configMapKey turns s into a valid ConfigMap key.
func configMapKey(s string) string { return notKeyChar.ReplaceAllString(s, "_") }

func size(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

// hash is a digest of everything the server reads from ConfigMaps. Put on
// the pod template, it makes re-applying changed manifests restart the
// server, which reads its configuration only at start.
func (s *Server) hash() string {
	h := sha256.New()
	write := func(m map[string]string) {
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "%d:%s%d:%s", len(k), k, len(m[k]), m[k])
		}
		h.Write([]byte{0})
	}
	write(map[string]string{ConfigFile: string(s.Config)})
	write(s.Policies)
	write(s.Trust)
	write(map[string]string{ClientCAKey: s.ClientCA})
	return hex.EncodeToString(h.Sum(nil))
}
