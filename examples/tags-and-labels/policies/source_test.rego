package stagegate.promotion_test

import rego.v1

import data.stagegate.promotion

cfg := {
	"stages": ["dev"],
	"stage": {"dev": {"groups": ["pipeline"], "minSoakSeconds": 0}},
}

promote(labels) := {
	"image": {"reference": "reg/shop/app:1.0", "digest": "sha256:aa", "labels": labels},
	"stage": "dev",
	"requester": {"subject": "ci", "groups": ["pipeline"]},
	"states": {},
	"now": "2026-12-03T10:00:00Z",
}

test_source_of_the_organisation_is_promoted if {
	count(promotion.deny) == 0 with input as promote({"org.opencontainers.image.source": "https://github.com/example/shop"})
		with data.stagegate.config as cfg
}

test_other_source_is_refused if {
	promotion.deny == {`image reg/shop/app:1.0 was not built from https://github.com/example/ (label org.opencontainers.image.source is "https://github.com/someone-else/tool")`} with input as promote({"org.opencontainers.image.source": "https://github.com/someone-else/tool"})
		with data.stagegate.config as cfg
}

test_no_label_is_refused if {
	some msg in promotion.deny with input as promote({})
		with data.stagegate.config as cfg
	contains(msg, `is ""`)
}
