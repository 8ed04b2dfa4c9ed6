// Package inventory is continuous validation: it watches the pods that run
// now, through client-go informers, and asks the admission Reviewer of each
// the question admission asked once, at creation ("would you admit it now?"),
// again whenever the answer may have changed: a new or changed pod, a
// namespace whose stage label changed, a revocation, a promotion or a policy
// reload (Invalidate, InvalidateAll), and a periodic full sweep. Each gated
// namespace's answers become a PolicyReport (wgpolicyk8s.io/v1alpha2), a
// Prometheus gauge, and an Event on each workload when it becomes violating.
//
// The question is a dry-run CREATE (admission.DryRunRequest), so a review
// records nothing, not even a break-glass; its admission.Trace says which
// image, digest and ledger entry a violation comes from.
//
// internal/app wires it into serve (config continuousValidation): one
// Controller per cluster, run by the holder of a Kubernetes Lease, with a
// Reviewer built like the webhook's but without admission.WithMetrics, so
// that its dry runs are not counted as admission decisions. It needs
// list/watch on pods and namespaces, get on replicasets, create/patch on
// events, and get/list/create/patch/delete on policyreports.wgpolicyk8s.io,
// whose CRD (internal/manifests/policyreport-crd.yaml) and RBAC `stagegate
// manifests` generates when the config enables it.
package inventory
