# Package stagegate.bench is the OPA baseline of `make bench`: the decision
# stagegate's webhook makes for a digest-pinned workload, written for
# `opa run --server` and queried with the raw AdmissionReview as input:
#
#   POST /v0/data/stagegate/bench/validate/<stage>
#
# It denies a workload when any container image is not pinned by digest, or
# when data.promotions[digest][stage] is absent, not promoted, or revoked.
# The promotions are loaded as data (promotions.json) for the same digests
# as the stagegate ledger the webhook serves.
package stagegate.bench

stages := ["dev", "test", "stage", "prod"]

# validate[stage] is the AdmissionReview answer for the stage.
validate[stage] := {
	"apiVersion": "admission.k8s.io/v1",
	"kind": "AdmissionReview",
	"response": response(stage),
} if {
	some stage in stages
}

response(stage) := {"uid": input.request.uid, "allowed": true} if {
	count(denials(stage)) == 0
}

response(stage) := {
	"uid": input.request.uid,
	"allowed": false,
	"status": {"code": 403, "reason": "Forbidden", "message": concat("; ", sort(denials(stage)))},
} if {
	count(denials(stage)) > 0
}

denials(stage) := unpinned | not_promoted(stage)

unpinned := {msg |
	some c in containers
	not contains(c.image, "@sha256:")
	msg := sprintf("container %q: image %q is not pinned by digest", [c.name, c.image])
}

not_promoted(stage) := {msg |
	some c in containers
	parts := split(c.image, "@")
	count(parts) == 2
	not active(parts[1], stage)
	msg := sprintf("container %q: image %q (%s) is not promoted to stage %q", [c.name, c.image, parts[1], stage])
}

active(digest, stage) if {
	s := data.promotions[digest][stage]
	s.promoted == true
	not s.revoked == true
}

# The pod spec of each kind the webhook checks.
pod_spec := input.request.object.spec if input.request.kind.kind == "Pod"

pod_spec := input.request.object.spec.template.spec if {
	input.request.kind.kind in {"Deployment", "ReplicaSet", "StatefulSet", "DaemonSet", "Job", "ReplicationController"}
}

pod_spec := input.request.object.spec.jobTemplate.spec.template.spec if input.request.kind.kind == "CronJob"

containers contains c if {
	some field in ["initContainers", "containers", "ephemeralContainers"]
	some c in object.get(pod_spec, field, [])
}
