# Package stagegate.admission decides whether a workload may run in a stage.
# Input: the AdmissionInput document (see README.md). Config:
# data.stagegate.config. deny refuses the workload, warn is returned to the
# client as warnings, and break_glass_allowed says whether the
# stagegate.dev/break-glass annotation may override deny.
package stagegate.admission

# Referring to data.stagegate.config, not to all of data, keeps the
# dependency graph free of cycles through this package's own rules.
default config := {}

config := data.stagegate.config

stages := object.get(config, "stages", [])

stage_config := object.get(config, ["stage", input.stage], {})

known_stage if input.stage in stages

# Tags can move, so the last stage of the pipeline never trusts them, whatever
# its allowTags says.
tags_refused if input.stage == stages[count(stages) - 1]

tags_refused if stage_config.allowTags == false

break_glass_allowed if {
	known_stage
	stage_config.breakGlass == true
}

# Admission runs on every pod, and nearly every pod is admitted without a
# word: known stage, every image pinned, digest known, promoted, not revoked.
# quiet recognises that case in one pass over the images, so that deny and
# warn skip the full rules below, which test each image several times and
# build messages. quiet must imply that full_deny and full_warn are empty;
# anything it does not recognise (an absent field, an error of "") simply
# takes the full rules, which decide as before.
quiet if {
	known_stage
	count(input.images) == count([1 |
		some img in input.images
		img.pinned == true
		img.state.promoted == true
		img.state.revoked == false
		object.get(img, "error", "") == ""
	])
}

deny contains msg if {
	not quiet
	some msg in full_deny
}

warn contains msg if {
	not quiet
	some msg in full_warn
}

full_deny contains msg if {
	not known_stage
	msg := sprintf("stage %q is not a known stage (known: %s): label the namespace or pod with one of them", [input.stage, concat(", ", stages)])
}

full_deny contains msg if {
	some img in input.images
	failed(img)
	msg := sprintf("%s: image %q: cannot learn its digest: %s", [subject(img), img.reference, img.error])
}

full_deny contains msg if {
	some img in input.images
	not failed(img)
	not img.state.promoted == true
	not img.state.revoked == true
	msg := sprintf(
		"%s: image %q (%s) is not promoted to stage %q",
		[subject(img), img.reference, img.digest, input.stage],
	)
}

full_deny contains msg if {
	some img in input.images
	not failed(img)
	img.state.revoked == true
	msg := sprintf(
		"%s: image %q (%s) was revoked from stage %q%s",
		[subject(img), img.reference, img.digest, input.stage, revocation_details(img.state)],
	)
}

full_deny contains msg if {
	tags_refused
	some img in input.images
	not img.pinned == true
	msg := sprintf(
		"%s: image %q is referenced by tag, which stage %q does not allow: pin by digest%s",
		[subject(img), img.reference, input.stage, pinned_example(img)],
	)
}

full_warn contains msg if {
	known_stage
	not tags_refused
	some img in input.images
	not failed(img)
	not img.pinned == true
	msg := sprintf(
		"%s: image %q is referenced by tag and resolved to %s; a tag can move, pin by digest (%s@%s)",
		[subject(img), img.reference, img.digest, img.repository, img.digest],
	)
}

failed(img) if object.get(img, "error", "") != ""

# subject names the container the way the pod spec does, e.g.
# `container "app"` or `initContainer "setup"`.
subject(img) := sprintf("%s %q", [object.get(img, "type", "container"), img.container]) if object.get(img, "type", "") != ""

subject(img) := sprintf("container %q", [img.container]) if object.get(img, "type", "") == ""

pinned_example(img) := sprintf(" (%s@%s)", [img.repository, img.digest]) if {
	not failed(img)
	object.get(img, "digest", "") != ""
}

pinned_example(img) := "" if {
	object.get(img, "digest", "") == ""
}

pinned_example(img) := "" if {
	object.get(img, "digest", "") != ""
	failed(img)
}

revocation_details(s) := concat("", [
	opt(" at %s", object.get(s, "revokedAt", "")),
	opt(" by %s", object.get(s, "revokedBy", "")),
	opt(": %s", object.get(s, "reason", "")),
])

opt(_, v) := "" if v == ""

opt(format, v) := sprintf(format, [v]) if v != ""
