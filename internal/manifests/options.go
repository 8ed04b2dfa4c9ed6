// Package manifests generates the Kubernetes objects that install stagegate:
// the ValidatingWebhookConfiguration that maps namespaces, pods and clusters
// to stages, and the objects that run the server itself.
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

	// ServingPort is the container port the server listens on.
	ServingPort = int32(8443)
)

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
	// Server is the server's configuration for the ConfigMaps; see
	// ServerFiles. Nil uses the defaults.
	Server *Server
}

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
		if s == "" {
			return fmt.Errorf("manifests: %w: empty stage name", ErrInvalidOption)
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
