// Package inventory is continuous validation: it watches the pods that run
// now, through client-go informers, and asks the admission Reviewer of each
// the question admission asked once, at creation ("would you admit it now?"),
// again whenever the answer may have changed: a new or changed pod, a
// namespace whose stage label changed, a revocation, a promotion or a policy
// reload (Invalidate), and a periodic full sweep. Each namespace's answers
// become a PolicyReport (wgpolicyk8s.io/v1alpha2), a Prometheus gauge, and
// an Event on each workload when it becomes violating.
package inventory
