package manifests

import (
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// WebhookIngressAnnotation is set on the NetworkPolicy when it lets any
// source reach the webhook's port, so that whoever reads the object in the
// cluster sees it, not only whoever read the command's warning.
const WebhookIngressAnnotation = "stagegate.dev/webhook-ingress"

// openWebhookNote is WebhookIngressAnnotation's value.
const openWebhookNote = "from any source: no --apiserver-cidr or --apiserver-pods was given, " +
	"so only the API server's client certificate keeps others out of the webhook"

// WebhookOpen reports whether the NetworkPolicy of o lets any source reach
// the webhook's port: it does when o names no API server peer. Commands
// should say so.
func (o Options) WebhookOpen() bool {
	return len(o.APIServerCIDRs) == 0 && len(o.APIServerPods) == 0
}

// validateNetwork checks the options of the webhook's client certificate
// and of the NetworkPolicy.
func (o Options) validateNetwork() error {
	if o.NoWebhookClientAuth && o.WebhookClientCA != nil {
		return fmt.Errorf("manifests: %w: a webhook client CA was given, but the webhook's client certificate is turned off", ErrInvalidOption)
	}
	if o.WebhookClientCA != nil && !hasCertificate(o.WebhookClientCA) {
		return fmt.Errorf("manifests: %w: webhook client CA holds no PEM certificate", ErrInvalidOption)
	}
	// Without the certificate, an open webhook port would let any pod
	// forge reviews: there is no safe default address for the API server,
	// so it must be named.
	if o.NoWebhookClientAuth && o.WebhookOpen() {
		return fmt.Errorf("manifests: %w: without the API server's client certificate, the NetworkPolicy is all that keeps "+
			"other pods from forging reviews: name where the API server's calls come from with --apiserver-cidr (or --apiserver-pods)", ErrInvalidOption)
	}
	for _, c := range o.APIServerCIDRs {
		if _, err := parseCIDR("apiserver cidr", c); err != nil {
			return err
		}
	}
	for _, c := range o.APIClientCIDRs {
		if _, err := parseCIDR("api client cidr", c); err != nil {
			return err
		}
	}
	for _, p := range o.APIServerPods {
		if _, err := parsePods(p); err != nil {
			return err
		}
	}
	if _, err := apiClientNamespaces(o.APIClientNamespaces); err != nil {
		return err
	}
	return nil
}

// parseCIDR reads an address range. One with host bits set is refused
// rather than masked: "10.0.0.5/24" may mean the /24 or the one address,
// and only the operator knows which.
func parseCIDR(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return p, fmt.Errorf("manifests: %w: %s %q: want an address range such as 192.0.2.0/24 or 2001:db8::/64 (one address is /32 or /128)",
			ErrInvalidOption, what, s)
	}
	if p != p.Masked() {
		return p, fmt.Errorf("manifests: %w: %s %q has bits set past its prefix length: write %s for the range, or %s/%d for the one address",
			ErrInvalidOption, what, s, p.Masked(), p.Addr(), p.Addr().BitLen())
	}
	return p, nil
}

// parsePods reads "namespace" or "namespace/label-selector" into a peer.
func parsePods(s string) (networkingv1.NetworkPolicyPeer, error) {
	ns, sel, _ := strings.Cut(s, "/")
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return networkingv1.NetworkPolicyPeer{}, fmt.Errorf("manifests: %w: apiserver pods %q: want namespace or namespace/label-selector: namespace %q: %s",
			ErrInvalidOption, s, ns, strings.Join(errs, "; "))
	}
	pods, err := metav1.ParseToLabelSelector(sel)
	if err != nil {
		return networkingv1.NetworkPolicyPeer{}, fmt.Errorf("manifests: %w: apiserver pods %q: %w", ErrInvalidOption, s, err)
	}
	return networkingv1.NetworkPolicyPeer{
		NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{namespaceNameLabel: ns}},
		PodSelector:       pods,
	}, nil
}

// apiClientNamespaces parses APIClientNamespaces; empty selects every
// namespace.
func apiClientNamespaces(s string) (*metav1.LabelSelector, error) {
	sel, err := metav1.ParseToLabelSelector(s)
	if err != nil {
		return nil, fmt.Errorf("manifests: %w: api client namespaces %q: %w", ErrInvalidOption, s, err)
	}
	return sel, nil
}

func ipBlocks(cidrs []string) []networkingv1.NetworkPolicyPeer {
	var out []networkingv1.NetworkPolicyPeer
	for _, c := range cidrs {
		out = append(out, networkingv1.NetworkPolicyPeer{IPBlock: &networkingv1.IPBlock{CIDR: c}})
	}
	return out
}

// NetworkPolicy returns the ingress policy of the stagegate pods:
//
//   - the webhook's port only from APIServerCIDRs and APIServerPods, or
//     from anywhere when neither is set (WebhookOpen). There is no safe
//     default for where the API server's calls come from: the node
//     addresses of a self-managed control plane, their overlay tunnel
//     addresses, a provider's range or a proxy's pods. A guess that
//     misses would block the API server, and the fail-closed webhook
//     would then refuse every workload in every stage. So the default
//     relies on the client certificate alone, says so in an annotation,
//     and Validate requires the peers when the certificate is off;
//   - the promotion API's port from the pods of APIClientNamespaces
//     (every namespace by default) and from APIClientCIDRs.
//
// The kubelet's probes need no rule: traffic from a pod's own node is
// always allowed. Egress is not restricted: the server calls registries
// the config names.
func NetworkPolicy(o Options) *networkingv1.NetworkPolicy {
	o = o.withDefaults()
	tcp := corev1.ProtocolTCP
	port := func(p int32) []networkingv1.NetworkPolicyPort {
		n := intstr.FromInt32(p)
		return []networkingv1.NetworkPolicyPort{{Protocol: &tcp, Port: &n}}
	}
	np := &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: meta(o, o.Service, "webhook"),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{MatchLabels: selector(o)},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress},
		},
	}
	// Validate has refused bad values; what is left still renders.
	webhook := networkingv1.NetworkPolicyIngressRule{Ports: port(WebhookPort), From: ipBlocks(o.APIServerCIDRs)}
	for _, p := range o.APIServerPods {
		if peer, err := parsePods(p); err == nil {
			webhook.From = append(webhook.From, peer)
		}
	}
	if o.WebhookOpen() {
		np.Annotations = map[string]string{WebhookIngressAnnotation: openWebhookNote}
	}
	ns, err := apiClientNamespaces(o.APIClientNamespaces)
	if err != nil {
		ns = &metav1.LabelSelector{}
	}
	api := networkingv1.NetworkPolicyIngressRule{
		Ports: port(ServingPort),
		From:  append([]networkingv1.NetworkPolicyPeer{{NamespaceSelector: ns}}, ipBlocks(o.APIClientCIDRs)...),
	}
	np.Spec.Ingress = []networkingv1.NetworkPolicyIngressRule{webhook, api}
	return np
}
