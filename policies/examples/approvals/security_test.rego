package stagegate.promotion_approvals_test

import data.stagegate.promotion

config := {
	"stages": ["dev", "prod"],
	"stage": {"dev": {"groups": ["pipeline"]}, "prod": {"groups": ["release"], "approvals": {"required": 2, "groups": ["security", "release"]}}},
}

# A request that passes every other rule, as the server asks at completion.
base := {
	"image": {"reference": "reg/app@sha256:1", "repository": "reg/app", "digest": "sha256:1"},
	"stage": "prod",
	"requester": {"subject": "ci", "groups": ["release"]},
	"states": {"dev": {"promoted": true, "promotedAt": "2026-01-01T00:00:00Z", "revoked": false}},
	"now": "2026-01-03T00:00:00Z",
}

approval(subject, groups) := {"subject": subject, "groups": groups, "time": "2026-01-02T00:00:00Z", "reason": "ok"}

test_request_time_has_no_approvals_and_is_not_denied_by_this_rule if {
	not "prod needs an approval from security" in promotion.deny with input as base with data.stagegate.config as config
}

test_security_and_release_allowed if {
	count(promotion.deny) == 0 with input as object.union(base, {"approvals": [approval("sec", ["security"]), approval("rm", ["release"])]})
		with data.stagegate.config as config
}

test_two_from_release_denied if {
	"prod needs an approval from security" in promotion.deny with input as object.union(base, {"approvals": [approval("a", ["release"]), approval("b", ["release"])]})
		with data.stagegate.config as config
}

test_one_from_each_in_one_person_allowed if {
	count(promotion.deny) == 0 with input as object.union(base, {"approvals": [approval("both", ["security", "release"])]})
		with data.stagegate.config as config
}
