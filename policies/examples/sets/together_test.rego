package stagegate.promotion_sets_test

import data.stagegate.promotion

config := {
	"stages": ["dev", "prod"],
	"stage": {"dev": {"groups": ["pipeline"]}, "prod": {"groups": ["release"]}},
}

app := {"reference": "reg/shop/app@sha256:1", "repository": "reg/shop/app", "digest": "sha256:1"}

cfg := {"reference": "reg/shop/config@sha256:2", "repository": "reg/shop/config", "digest": "sha256:2"}

# A promotion that passes every other rule.
base := {
	"image": app,
	"stage": "prod",
	"requester": {"subject": "rm", "groups": ["release"]},
	"states": {"dev": {"promoted": true, "promotedAt": "2026-01-01T00:00:00Z", "revoked": false}},
	"now": "2026-01-03T00:00:00Z",
}

msg := "reg/shop/app goes to prod only in a promotion set with its config (a .../shop/config artifact)"

test_alone_denied if {
	msg in promotion.deny with input as base with data.stagegate.config as config
}

test_in_a_set_without_config_denied if {
	other := {"reference": "reg/shop/web@sha256:3", "repository": "reg/shop/web", "digest": "sha256:3"}
	msg in promotion.deny with input as object.union(base, {"set": [app, other]}) with data.stagegate.config as config
}

test_with_its_config_allowed if {
	count(promotion.deny) == 0 with input as object.union(base, {"set": [app, cfg]}) with data.stagegate.config as config
}

test_dev_needs_no_set if {
	count(promotion.deny) == 0 with input as object.union(base, {"stage": "dev", "requester": {"subject": "ci", "groups": ["pipeline"]}, "states": {}})
		with data.stagegate.config as config
}
