// Package admission is stagegate's validating admission webhook: it turns an
// AdmissionRequest into the images a workload would run, looks each digest up
// in the ledger, asks the admission policy once, and answers with an
// AdmissionResponse. It fails closed: when it cannot decide, it denies with a
// message that says why.
//
// Like k8s pod-security-admission, the decision (Reviewer) is separate from
// the HTTP adapter (NewHandler), so that `stagegate check` can make the very
// same decision offline (Reviewer.Check).
package admission
