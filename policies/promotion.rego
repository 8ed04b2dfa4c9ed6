# Package stagegate.promotion decides whether a promotion request may be
# recorded. Input: the PromotionInput document (see README.md). Config:
# data.stagegate.config. Every violated rule adds its own message to deny;
# an empty deny set allows the promotion.
package stagegate.promotion

# Referring to data.stagegate.config, not to all of data, keeps the
# dependency graph free of cycles through this package's own rules.
default config := {}

config := data.stagegate.config

stages := object.get(config, "stages", [])

# stage_config is {} for a stage listed in stages but not configured, so that
# every rule below falls back to its strictest default.
stage_config := object.get(config, ["stage", input.stage], {})

known_stage if input.stage in stages

stage_index := i if {
	some i, s in stages
	s == input.stage
}

# previous_stage is undefined for the first stage: it may be promoted to
# directly.
previous_stage := stages[stage_index - 1] if stage_index > 0

previous_state := object.get(input, ["states", previous_stage], {})

previous_active if {
	previous_state.promoted == true
	not previous_state.revoked == true
}

digest := object.get(input, ["image", "digest"], "")

image_name := sprintf("%s@%s", [object.get(input, ["image", "repository"], ""), digest])

deny contains msg if {
	not known_stage
	msg := sprintf("stage %q is not a known stage: use one of %s", [input.stage, quoted_list(stages)])
}

deny contains msg if {
	known_stage
	allowed := object.get(stage_config, "groups", [])
	not requester_in_any(allowed)
	msg := sprintf(
		"requester %q (groups %s) may not promote to stage %q: ask a member of %s, or get added to one of these groups",
		[input.requester.subject, quoted_list(object.get(input, ["requester", "groups"], [])), input.stage, groups_text(allowed)],
	)
}

deny contains msg if {
	previous_stage
	not previous_state.promoted == true
	msg := sprintf(
		"image %s is not promoted to stage %q, which comes before %q: promote to %s first",
		[image_name, previous_stage, input.stage, previous_stage],
	)
}

deny contains msg if {
	previous_stage
	previous_state.promoted == true
	previous_state.revoked == true
	msg := sprintf(
		"image %s was revoked from stage %q%s: it must be active in %q before promotion to %q; promote it to %s again first",
		[image_name, previous_stage, revocation_details(previous_state), previous_stage, input.stage, previous_stage],
	)
}

min_soak_seconds := object.get(stage_config, "minSoakSeconds", 0)

deny contains msg if {
	previous_active
	min_soak_seconds > 0
	not soak_times_readable
	msg := sprintf(
		"cannot tell how long image %s has soaked in stage %q (promotedAt %q, now %q): both must be RFC 3339 times",
		[image_name, previous_stage, object.get(previous_state, "promotedAt", ""), object.get(input, "now", "")],
	)
}

deny contains msg if {
	previous_active
	min_soak_seconds > 0
	soak_times_readable
	required_ns := min_soak_seconds * 1000000000
	elapsed_ns := now_ns - promoted_ns
	elapsed_ns < required_ns
	remaining := ceil((required_ns - elapsed_ns) / 1000000000)
	ready := time.format([promoted_ns + required_ns, "UTC", "2006-01-02T15:04:05Z07:00"])
	msg := sprintf(
		"image %s must soak in stage %q for %s before promotion to %q: retry in %s (at %s)",
		[image_name, previous_stage, duration(min_soak_seconds), input.stage, duration(remaining), ready],
	)
}

now_ns := time.parse_rfc3339_ns(input.now)

promoted_ns := time.parse_rfc3339_ns(previous_state.promotedAt)

soak_times_readable if {
	now_ns
	promoted_ns
}

deny contains msg if {
	known_stage
	some predicate_type in object.get(config, ["requiredEvidence", input.stage], [])
	not has_evidence(predicate_type)
	msg := sprintf(
		"stage %q requires verified evidence of predicate type %q for image %s: attach a signed attestation of that type to the image (e.g. cosign attest --type %s) and retry",
		[input.stage, predicate_type, image_name, predicate_type],
	)
}

has_evidence(predicate_type) if {
	some t, _ in object.get(input, "verifiedEvidence", {})
	t == predicate_type
}

requester_in_any(allowed) if {
	some g in object.get(input, ["requester", "groups"], [])
	g in allowed
}

groups_text(allowed) := "no group (the stage allows nobody)" if count(allowed) == 0

groups_text(allowed) := quoted_list(allowed) if count(allowed) > 0

quoted_list(xs) := concat(", ", [sprintf("%q", [x]) | some x in xs])

revocation_details(s) := concat("", [
	opt(" at %s", object.get(s, "revokedAt", "")),
	opt(" by %s", object.get(s, "revokedBy", "")),
	opt(" (%s)", object.get(s, "reason", "")),
])

opt(_, v) := "" if v == ""

opt(format, v) := sprintf(format, [v]) if v != ""

# duration formats whole seconds like Go's time.Duration, e.g. "1h0m0s".
duration(s) := sprintf("%dh%dm%ds", [h, m, sec]) if {
	n := ceil(s)
	n >= 3600
	h := floor(n / 3600)
	m := floor((n % 3600) / 60)
	sec := n % 60
}

duration(s) := sprintf("%dm%ds", [floor(n / 60), n % 60]) if {
	n := ceil(s)
	n >= 60
	n < 3600
}

duration(s) := sprintf("%ds", [n]) if {
	n := ceil(s)
	n < 60
}
