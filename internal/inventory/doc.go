// Package inventory is continuous validation: it watches the pods that run
// now, through client-go informers, and asks the admission Reviewer of each
// the question admission asked once, at creation ("would you admit it now?"),
// again whenever the answer may have changed: a new or changed pod, a
// namespace whose stage label changed, a revocation, a promotion or a policy
// reload (Invalidate, InvalidateAll), and a periodic full sweep.
//
// Every replica runs a Controller (Run) and keeps the answers of its last
// evaluation, so that each can say where a digest runs (Running) and what
// violates now (Violations); they return ErrNotSynced until every namespace
// was evaluated once. Only the replica that leads (Lead, for one term of a
// Kubernetes Lease) writes: each gated namespace's answers become a
// PolicyReport (wgpolicyk8s.io/v1alpha2), a Prometheus gauge, an Event on
// each workload when it becomes violating, and, in the stages given to
// WithEviction, an eviction through the Eviction API of each pod whose
// digest is revoked or not promoted there.
//
// The GitOps objects that make a controller deploy an OCI artifact, Flux's
// OCIRepository and Argo CD's Application (GitOpsKinds), are inventoried
// and judged the same way, through dynamic informers, once their CRD is
// served: a cluster without it is said so once in the log and watched for
// pods, and the kind is watched from the first sweep after its CRD came.
// They are reported, in the same PolicyReport, gauge and answers, and
// never evicted.
//
// The question is a dry-run CREATE (admission.DryRunRequest), so a review
// records nothing, not even a break-glass; its admission.Trace says which
// image, digest and ledger entry a violation comes from.
//
// internal/app wires it into serve (config continuousValidation), with a
// Reviewer built like the webhook's but without admission.WithMetrics, so
// that its dry runs are not counted as admission decisions. It needs
// list/watch on pods, namespaces, ocirepositories.source.toolkit.fluxcd.io
// and applications.argoproj.io, get on replicasets, create/patch on
// events, get/list/create/patch/delete on policyreports.wgpolicyk8s.io, and
// create on pods/eviction when a stage evicts; `stagegate manifests`
// generates the CRD (internal/manifests/policyreport-crd.yaml) and that RBAC
// when the config enables it.
package inventory
