package manifests

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// groupResource is a resource of an API group; group "" is the core group.
type groupResource struct{ group, name string }

// String is kubectl's form: "widgets.example.com", "pods".
func (r groupResource) String() string {
	if r.group == "" {
		return r.name
	}
	return r.name + "." + r.group
}

// podlessResources are never sent to the webhook. Their schemas are fixed
// by Kubernetes and hold no pod spec, and the control plane writes them
// all the time in every namespace: with a fail-closed webhook, a stagegate
// outage would stop Service endpoints from following pods and controllers
// from renewing their leader leases, and every Event would cost a call.
var podlessResources = []groupResource{
	{"", "events"},
	{"events.k8s.io", "events"},
	{"", "endpoints"},
	{"discovery.k8s.io", "endpointslices"},
	{"coordination.k8s.io", "leases"},
}

// workloadResources are the built-in kinds that are or carry pod specs.
// SkipResources refuses them: the server always reads them, so skipping
// one could only let its images in unchecked.
var workloadResources = []groupResource{
	{"", "pods"},
	{"", "podtemplates"},
	{"", "replicationcontrollers"},
	{"apps", "deployments"},
	{"apps", "replicasets"},
	{"apps", "statefulsets"},
	{"apps", "daemonsets"},
	{"batch", "jobs"},
	{"batch", "cronjobs"},
}

// parseResource reads kubectl's "resource.group" form, or a core
// resource's plain name.
func parseResource(s string) (groupResource, error) {
	name, group, _ := strings.Cut(s, ".")
	r := groupResource{group: group, name: name}
	if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
		return r, fmt.Errorf("manifests: %w: skip resource %q: want the lowercase plural resource and its group, as `kubectl api-resources` names them (e.g. widgets.example.com, or a core resource alone): %s",
			ErrInvalidOption, s, strings.Join(errs, "; "))
	}
	if group != "" {
		if errs := validation.IsDNS1123Subdomain(group); len(errs) > 0 {
			return r, fmt.Errorf("manifests: %w: skip resource %q: group %q: %s", ErrInvalidOption, s, group, strings.Join(errs, "; "))
		}
	}
	if slices.Contains(workloadResources, r) {
		return r, fmt.Errorf("manifests: %w: skip resource %q: it carries pod specs, which the webhook always reads; skipping it would admit their images unchecked", ErrInvalidOption, s)
	}
	return r, nil
}

// skipped returns the resources the validating entries exclude: the
// podless built-ins, then skip in order, without duplicates.
func skipped(skip []string) ([]groupResource, error) {
	out := slices.Clone(podlessResources)
	for _, s := range skip {
		r, err := parseResource(s)
		if err != nil {
			return out, err
		}
		if !slices.Contains(out, r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// matchConditions turns skip into the entries' one matchCondition: the
// API server calls the webhook only when it is true, so a skipped
// resource is admitted without a call (and without failing closed).
func matchConditions(skip []groupResource) []admissionregistrationv1.MatchCondition {
	if len(skip) == 0 {
		return nil
	}
	terms := make([]string, len(skip))
	for i, r := range skip {
		terms[i] = fmt.Sprintf("!(request.resource.group == %s && request.resource.resource == %s)",
			strconv.Quote(r.group), strconv.Quote(r.name))
	}
	return []admissionregistrationv1.MatchCondition{{
		Name:       "not-skipped",
		Expression: strings.Join(terms, " &&\n"),
	}}
}
