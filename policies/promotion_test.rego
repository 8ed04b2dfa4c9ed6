package stagegate.promotion_test

import data.stagegate.promotion

cfg := {
	"stages": ["dev", "test", "stage", "prod"],
	"stage": {
		"dev": {"groups": ["pipeline"], "minSoakSeconds": 0, "mode": "enforce", "breakGlass": true, "allowTags": true},
		"test": {"groups": ["pipeline"], "minSoakSeconds": 0, "mode": "enforce", "breakGlass": true, "allowTags": true},
		"stage": {"groups": ["release"], "minSoakSeconds": 3600, "mode": "enforce", "breakGlass": true, "allowTags": true},
		"prod": {"groups": ["release"], "minSoakSeconds": 86400, "mode": "enforce", "breakGlass": false, "allowTags": false},
	},
	"requiredEvidence": {"prod": ["https://slsa.dev/provenance/v1"]},
}

digest := "sha256:1111111111111111111111111111111111111111111111111111111111111111"

image_name := concat("@", ["reg.example/app", digest])

active(at) := {"promoted": true, "promotedAt": at, "promotedBy": "ci", "revoked": false}

# req builds a promotion request to stage by a requester in groups, with the
# digest's ledger states.
req(stage, groups, states) := {
	"image": {
		"reference": "reg.example/app:1.0",
		"repository": "reg.example/app",
		"tag": "1.0",
		"digest": digest,
	},
	"stage": stage,
	"requester": {"subject": "alice", "groups": groups, "method": "token"},
	"reason": "release 1.0",
	"verifiedEvidence": {"https://slsa.dev/provenance/v1": {"buildType": "x"}},
	"states": states,
	"now": "2025-06-02T12:00:00Z",
}

deny_for(inp) := d if {
	d := promotion.deny with input as inp with data.stagegate.config as cfg
}

test_first_stage_allowed if {
	count(deny_for(req("dev", ["pipeline"], {}))) == 0
}

test_next_stage_allowed if {
	count(deny_for(req("test", ["pipeline"], {"dev": active("2025-06-02T11:59:59Z")}))) == 0
}

test_prod_allowed_after_soak if {
	count(deny_for(req("prod", ["release"], {"stage": active("2025-06-01T12:00:00Z")}))) == 0
}

test_unknown_stage if {
	d := deny_for(req("qa", ["pipeline"], {}))
	d == {`stage "qa" is not a known stage: use one of "dev", "test", "stage", "prod"`}
}

test_requester_not_in_group if {
	d := deny_for(req("dev", ["devs"], {}))
	d == {`requester "alice" (groups "devs") may not promote to stage "dev": ask a member of "pipeline", or get added to one of these groups`}
}

test_requester_in_one_of_several_groups if {
	count(deny_for(req("dev", ["devs", "pipeline"], {}))) == 0
}

test_stage_without_groups_allows_nobody if {
	c := json.patch(cfg, [{"op": "remove", "path": "/stage/dev/groups"}])
	d := promotion.deny with input as req("dev", ["pipeline"], {}) with data.stagegate.config as c
	d == {`requester "alice" (groups "pipeline") may not promote to stage "dev": ask a member of no group (the stage allows nobody), or get added to one of these groups`}
}

test_skipping_a_stage_denied if {
	d := deny_for(req("stage", ["release"], {"dev": active("2025-01-01T00:00:00Z")}))
	d == {sprintf(`image %s is not promoted to stage "test", which comes before "stage": promote to test first`, [image_name])}
}

test_previous_stage_revoked_denied if {
	revoked := object.union(active("2025-01-01T00:00:00Z"), {
		"revoked": true, "revokedAt": "2025-05-01T00:00:00Z", "revokedBy": "sec", "reason": "CVE-2025-1",
	})
	d := deny_for(req("test", ["pipeline"], {"dev": revoked}))
	d == {sprintf(`image %s was revoked from stage "dev" at 2025-05-01T00:00:00Z by sec (CVE-2025-1): it must be active in "dev" before promotion to "test"; promote it to dev again first`, [image_name])}
}

test_repromotion_after_revocation_in_target_allowed if {
	revoked := object.union(active("2025-01-01T00:00:00Z"), {"revoked": true})
	count(deny_for(req("test", ["pipeline"], {"dev": active("2025-06-01T00:00:00Z"), "test": revoked}))) == 0
}

test_soak_not_met if {
	d := deny_for(req("stage", ["release"], {"test": active("2025-06-02T11:30:00Z")}))
	d == {sprintf(`image %s must soak in stage "test" for 1h0m0s before promotion to "stage": retry in 30m0s (at 2025-06-02T12:30:00Z)`, [image_name])}
}

test_soak_remaining_rounds_up if {
	d := deny_for(req("prod", ["release"], {"stage": active("2025-06-01T12:00:00.5Z")}))
	d == {sprintf(`image %s must soak in stage "stage" for 24h0m0s before promotion to "prod": retry in 1s (at 2025-06-02T12:00:00Z)`, [image_name])}
}

test_soak_exactly_met if {
	count(deny_for(req("stage", ["release"], {"test": active("2025-06-02T11:00:00Z")}))) == 0
}

test_soak_unreadable_time if {
	d := deny_for(req("stage", ["release"], {"test": active("yesterday")}))
	d == {sprintf(`cannot tell how long image %s has soaked in stage "test" (promotedAt "yesterday", now "2025-06-02T12:00:00Z"): both must be RFC 3339 times`, [image_name])}
}

test_soak_not_checked_without_minimum if {
	count(deny_for(req("test", ["pipeline"], {"dev": active("")}))) == 0
}

test_required_evidence_missing if {
	inp := json.patch(req("prod", ["release"], {"stage": active("2025-06-01T00:00:00Z")}), [{"op": "remove", "path": "/verifiedEvidence"}])
	d := deny_for(inp)
	d == {sprintf(`stage "prod" requires verified evidence of predicate type "https://slsa.dev/provenance/v1" for image %s: attach a signed attestation of that type to the image (e.g. cosign attest --type https://slsa.dev/provenance/v1) and retry`, [image_name])}
}

test_evidence_only_required_where_configured if {
	inp := json.patch(req("test", ["pipeline"], {"dev": active("2025-06-01T00:00:00Z")}), [{"op": "remove", "path": "/verifiedEvidence"}])
	count(deny_for(inp)) == 0
}

test_every_violation_reported if {
	inp := json.patch(req("prod", ["devs"], {"test": active("2025-06-01T00:00:00Z")}), [{"op": "remove", "path": "/verifiedEvidence"}])
	count(deny_for(inp)) == 3
}

test_no_stage_name_hard_coded if {
	c := {"stages": ["build", "live"], "stage": {"build": {"groups": ["ci"]}, "live": {"groups": ["ops"], "minSoakSeconds": 60}}}
	ok := promotion.deny with input as req("live", ["ops"], {"build": active("2025-06-02T11:58:00Z")}) with data.stagegate.config as c
	count(ok) == 0
	early := promotion.deny with input as req("live", ["ops"], {"build": active("2025-06-02T11:59:30Z")}) with data.stagegate.config as c
	early == {sprintf(`image %s must soak in stage "build" for 1m0s before promotion to "live": retry in 30s (at 2025-06-02T12:00:30Z)`, [image_name])}
}
