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
// Wiring it (not done here): run one Controller per cluster (the Raft
// leader, or a Lease holder); give it a Reviewer built like the webhook's
// but without admission.WithMetrics, so that its dry runs are not counted as
// admission decisions; it needs list/watch on pods and namespaces, get on
// replicasets, create/patch on events, and get/list/create/patch/delete on
// policyreports.wgpolicyk8s.io (CRD in testdata/policyreport-crd.yaml).
package inventory
