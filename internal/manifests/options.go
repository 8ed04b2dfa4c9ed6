// Package manifests generates the Kubernetes objects that install stagegate:
// the ValidatingWebhookConfiguration that maps namespaces, pods and clusters
// to stages, the ValidatingAdmissionPolicy that guards the stage label, the
// optional tag-pinning MutatingWebhookConfiguration, and the objects that
// run the server itself.
//
// The objects are typed k8s.io/api values so that field names and shapes are
// checked by the compiler; Write renders them as multi-document YAML.
package manifests

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net/url"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Defaults used when an Options field is zero.
const (
	DefaultNamespace      = "stagegate-system"
	DefaultService        = "stagegate"
	DefaultImage          = "ghcr.io/stagegate/stagegate:latest"
	DefaultTimeoutSeconds = int32(5)

	// StageLabel is the namespace or pod label that selects a stage
	// (DESIGN.md, "External contract").
	StageLabel = "stagegate.dev/stage"

	// ValidatePath is the admission endpoint prefix; the stage follows it.
	ValidatePath = "/admission/validate/"

	// UnknownStagePath is the endpoint for objects whose stage label names
	// no configured stage; the server refuses every workload sent there.
	UnknownStagePath = "/admission/unknown-stage"

	// MutatePath is the tag-pinning endpoint prefix; the stage follows it.
	MutatePath = "/admission/mutate/"

	// unknownStage names the unknown-stage entries. A stage of that name
	// would give two entries the same name, which the API server refuses.
	unknownStage = "unknown-stage"

	// AllStages in PinTags pins tags in every stage.
	AllStages = "*"

	// ServingPort is the container port of the promotion API, and of the
	// probes: the webhook's port may refuse them, having no client
	// certificate to show.
	ServingPort = int32(8443)

	// WebhookPort is the container port of the webhook's own listener
	// (config admission.listen). The Service maps port 443, the one the
	// webhook configurations call, to it.
	WebhookPort = int32(9443)
)

// DefaultStageLabelGroups may set the stage label on namespaces when
// Options.StageLabelGroups is empty. system:masters is the one group every
// cluster has, and its members can already do anything, including deleting
// the policy: the default trusts nobody new and locks out everyone else
// until the operator names the groups that own namespace stages (e.g. a
// GitOps controller's service-account group, or kubeadm:cluster-admins).
var DefaultStageLabelGroups = []string{"system:masters"}

// SystemNamespaces are never sent to the webhook: a fail-closed webhook on
// them could stop the control plane from healing itself, including
// restarting stagegate.
var SystemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Options describes one installation.
type Options struct {
	// Stages in pipeline order; one pair of webhook entries each.
	Stages []string
	// Namespace and Service locate the webhook Service. Namespace is also
	// excluded from admission so that stagegate never gates itself.
	Namespace, Service string
	// URL, if set, makes the webhook call URL + "/admission/validate/<S>"
	// instead of the Service: for a server running outside the cluster.
	URL string
	// CABundle is the PEM bundle the API server trusts for the webhook's
	// serving certificate. Empty leaves caBundle unset (e.g. for
	// cert-manager's CA injector or a kustomize overlay to fill in).
	CABundle []byte
	// TimeoutSeconds bounds each admission call (1 to 30).
	TimeoutSeconds int32
	// ClusterStage, if set, binds the whole cluster to that stage with an
	// entry that has no label selector.
	ClusterStage string
	// Image is the stagegate container image of the Deployment.
	Image string
	// ExcludeNamespaces are excluded from every entry, in addition to
	// SystemNamespaces and Namespace.
	ExcludeNamespaces []string
	// SkipResources are resources, in kubectl's "resource.group" form
	// ("widgets.example.com"; a core resource by its plain name), that the
	// validating entries never send to the webhook: for custom kinds that
	// run no pods and whose shape the server cannot read.
	SkipResources []string
	// StageLabelGroups may add, change or remove the stage label on
	// namespaces; the ValidatingAdmissionPolicy refuses everyone else.
	// Empty means DefaultStageLabelGroups.
	StageLabelGroups []string
	// PinTags lists the stages (or AllStages) whose pods get their image
	// tags rewritten to the checked digests by a MutatingWebhookConfiguration.
	// Empty generates none.
	PinTags []string
	// Server is the server's configuration for the ConfigMaps; see
	// ServerFiles. Nil uses the defaults, with the options below.
	Server *Server

	// WebhookClientCA is the CA (PEM) of the client certificate the API
	// server presents to the webhook (deploy/apiserver). ServerFiles
	// puts it in the ConfigMap <service>-apiserver-ca. Nil leaves that
	// ConfigMap to the operator, as the Secrets are, unless the config
	// names admission.clientCAFile: the certificate is still required.
	WebhookClientCA []byte
	// NoWebhookClientAuth serves the webhook without asking for the API
	// server's client certificate, for clusters whose kube-apiserver
	// flags cannot be set (managed control planes). Then anything that
	// can reach the webhook's port can post a review with the userInfo
	// of its choosing and, with a break-glass annotation, have it signed
	// into the ledger under that name: the NetworkPolicy is the only
	// fence left, so Validate requires APIServerCIDRs or APIServerPods.
	NoWebhookClientAuth bool
	// APIServerCIDRs are the addresses the API server's calls to the
	// webhook come from, as the pod sees them: the control-plane nodes'
	// addresses (or their overlay tunnel addresses), or a managed
	// control plane's range. The NetworkPolicy lets only them reach the
	// webhook's port. The API server runs on the host network, where no
	// pod selector can find it.
	APIServerCIDRs []string
	// APIServerPods are pods that carry the API server's calls, as
	// "namespace" or "namespace/label-selector" (e.g.
	// "kube-system/k8s-app=konnectivity-agent", for control planes that
	// reach the cluster through a Konnectivity proxy).
	APIServerPods []string
	// APIClientNamespaces is a label selector for the namespaces whose pods
	// may reach the promotion API's port; empty means every namespace.
	APIClientNamespaces string
	// APIClientCIDRs may reach the promotion API's port too: clients
	// outside the cluster (e.g. CI runners behind a load balancer that
	// keeps their addresses).
	APIClientCIDRs []string

	// Registries are hosts (host[:port]) added to the server's registry
	// allow-list, besides the config's registries. The allow-list is on
	// unless NoRegistryAllowList: ServerFiles refuses a config that then
	// names no host, rather than generate one the server refuses, or one
	// that contacts any host a pod or a redirect names.
	Registries []string
	// NoRegistryAllowList lets the server contact any registry host, as
	// a config without registryAllowList does: then a registry that
	// redirects to an internal address gets the server to fetch it.
	NoRegistryAllowList bool
	// Replicas is the number of servers. 0 or 1 runs one, in a
	// Deployment. More (odd, up to MaxReplicas) run a StatefulSet whose
	// members form one Raft cluster, with the config's cluster: section,
	// a headless Service for the peers, a PodDisruptionBudget and the
	// peer port's NetworkPolicy.
	Replicas int32
	// NonVoters adds members to a replicated installation that replicate
	// the ledger and serve admission but do not vote: more admission
	// capacity without slowing commits. They are the StatefulSet's
	// highest ordinals.
	NonVoters int32
	// AdoptLedger, with Replicas 3 or more, writes cluster.adopt for
	// member 0: the upgrade from one replica, whose ledger (on the claim
	// data-<service>-0) becomes the cluster's first state.
	AdoptLedger bool
	// NoCheckpointGuard leaves out the rollback guard: the config's
	// ledger.checkpointFile and the <service>-guard PersistentVolumeClaim
	// it lives on. Without it the server starts on any older copy of the
	// ledger (one from before a revocation, say). For clusters where a
	// second claim is not to be had; to keep the file on some other
	// volume instead, patch the "guard" volume of the Deployment.
	NoCheckpointGuard bool
}

// PlaceholderRegistry is the allow-list's host in deploy/base, and when
// Deployment makes the server's config itself (Options.Server nil) and no
// host is given: it names no real registry, so the server contacts none
// until the operator names theirs.
const PlaceholderRegistry = "registry.example.internal"

// withDefaults returns a copy of o with zero fields set to their defaults.
func (o Options) withDefaults() Options {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Service == "" {
		o.Service = DefaultService
	}
	if o.Image == "" {
		o.Image = DefaultImage
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if len(o.StageLabelGroups) == 0 {
		o.StageLabelGroups = DefaultStageLabelGroups
	}
	return o
}

// Validate reports options that would produce an unusable or unsafe
// configuration. The generators do not call it, so that tests can render
// anything; commands should.
func (o Options) Validate() error {
	o = o.withDefaults()
	if len(o.Stages) == 0 {
		return fmt.Errorf("manifests: %w", ErrNoStages)
	}
	for i, s := range o.Stages {
		// The stage is a label value and part of entry names and paths.
		if errs := validation.IsDNS1123Label(s); len(errs) > 0 {
			return fmt.Errorf("manifests: %w: stage %q: %s", ErrInvalidOption, s, strings.Join(errs, "; "))
		}
		if s == unknownStage {
			return fmt.Errorf("manifests: %w: stage name %q is reserved for the entries that refuse unknown stages", ErrInvalidOption, s)
		}
		if slices.Contains(o.Stages[:i], s) {
			return fmt.Errorf("manifests: %w: stage %q listed twice", ErrInvalidOption, s)
		}
	}
	if o.ClusterStage != "" && !slices.Contains(o.Stages, o.ClusterStage) {
		return fmt.Errorf("manifests: %w: cluster stage %q is not one of %v", ErrUnknownStage, o.ClusterStage, o.Stages)
	}
	// The API server caps webhook timeouts at 30 seconds.
	if o.TimeoutSeconds < 1 || o.TimeoutSeconds > 30 {
		return fmt.Errorf("manifests: %w: timeout %ds must be between 1 and 30", ErrInvalidOption, o.TimeoutSeconds)
	}
	if len(o.CABundle) > 0 && !hasCertificate(o.CABundle) {
		return fmt.Errorf("manifests: %w: CA bundle holds no PEM certificate", ErrInvalidOption)
	}
	if o.URL != "" {
		u, err := url.Parse(o.URL)
		if err != nil {
			return fmt.Errorf("manifests: %w: url: %w", ErrInvalidOption, err)
		}
		// The API server only calls webhooks over HTTPS and rejects
		// queries and fragments.
		if u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return fmt.Errorf("manifests: %w: url %q must be https://host[:port][/path] without user, query or fragment", ErrInvalidOption, o.URL)
		}
	}
	if _, err := skipped(o.SkipResources); err != nil {
		return err
	}
	if err := validGroups(o.StageLabelGroups); err != nil {
		return err
	}
	if _, err := pinStages(o); err != nil {
		return err
	}
	if err := validRegistries(o); err != nil {
		return err
	}
	if err := validReplicas(o); err != nil {
		return err
	}
	return o.validateNetwork()
}

// validRegistries checks Registries as the config checks registries[].host,
// and that they are not given with the allow-list off, where they would
// mean nothing.
func validRegistries(o Options) error {
	if o.NoRegistryAllowList && len(o.Registries) > 0 {
		return fmt.Errorf("manifests: %w: registry hosts %v are given, but the registry allow-list is turned off", ErrInvalidOption, o.Registries)
	}
	for i, h := range o.Registries {
		if h == "" || strings.ContainsAny(h, "/@ \t\n") {
			return fmt.Errorf("manifests: %w: registry %q must be host[:port], without a scheme or path", ErrInvalidOption, h)
		}
		if slices.Contains(o.Registries[:i], h) {
			return fmt.Errorf("manifests: %w: registry %q listed twice", ErrInvalidOption, h)
		}
	}
	return nil
}

// excluded lists the namespaces no entry may match, without duplicates.
func (o Options) excluded() []string {
	out := slices.Clone(SystemNamespaces)
	for _, ns := range append([]string{o.Namespace}, o.ExcludeNamespaces...) {
		if ns != "" && !slices.Contains(out, ns) {
			out = append(out, ns)
		}
	}
	return out
}

// hasCertificate reports whether b holds at least one PEM CERTIFICATE
// block. The API server accepts any bytes as caBundle and only fails, on
// every admission, at the TLS handshake; this catches a wrong file early.
func hasCertificate(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if blk.Type == "CERTIFICATE" && len(bytes.TrimSpace(blk.Bytes)) > 0 {
			return true
		}
	}
}
