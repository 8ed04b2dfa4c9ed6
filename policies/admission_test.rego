package stagegate.admission_test

import data.stagegate.admission

cfg := {
	"stages": ["dev", "test", "stage", "prod"],
	"stage": {
		"dev": {"groups": ["pipeline"], "minSoakSeconds": 0, "mode": "enforce", "breakGlass": true, "allowTags": true},
		"test": {"groups": ["pipeline"], "minSoakSeconds": 0, "mode": "enforce", "breakGlass": true, "allowTags": false},
		"stage": {"groups": ["release"], "minSoakSeconds": 3600, "mode": "enforce", "breakGlass": true, "allowTags": true},
		"prod": {"groups": ["release"], "minSoakSeconds": 86400, "mode": "enforce", "breakGlass": false, "allowTags": true},
	},
}

digest := "sha256:2222222222222222222222222222222222222222222222222222222222222222"

promoted := {"promoted": true, "promotedAt": "2025-06-01T00:00:00Z", "promotedBy": "ci", "revoked": false}

# img is container "app" running reg.example/app, pinned by digest or by tag.
img(pinned, state) := {
	"container": "app",
	"type": "container",
	"reference": ref(pinned),
	"repository": "reg.example/app",
	"tag": "1.0",
	"digest": digest,
	"pinned": pinned,
	"state": state,
}

ref(true) := concat("@", ["reg.example/app", digest])

ref(false) := "reg.example/app:1.0"

review(stage, images) := {
	"stage": stage,
	"operation": "CREATE",
	"dryRun": false,
	"user": {"subject": "system:serviceaccount:ci:deployer", "groups": ["system:serviceaccounts"]},
	"workload": {"group": "", "version": "v1", "kind": "Pod", "namespace": "shop", "name": "app"},
	"images": images,
}

decide(inp) := {"deny": d, "warn": w, "break_glass_allowed": b} if {
	d := admission.deny with input as inp with data.stagegate.config as cfg
	w := admission.warn with input as inp with data.stagegate.config as cfg
	b := bga(inp)
}

bga(inp) if {
	admission.break_glass_allowed with input as inp with data.stagegate.config as cfg
} else := false

test_pinned_promoted_allowed if {
	decide(review("prod", [img(true, promoted)])) == {"deny": set(), "warn": set(), "break_glass_allowed": false}
}

test_not_promoted_denied if {
	d := decide(review("prod", [img(true, {"promoted": false, "revoked": false})])).deny
	d == {sprintf(`container "app": image "reg.example/app@%s" (%s) is not promoted to stage "prod"`, [digest, digest])}
}

test_missing_state_denied if {
	i := json.patch(img(true, promoted), [{"op": "remove", "path": "/state"}])
	count(decide(review("dev", [i])).deny) == 1
}

test_revoked_denied_with_when_and_why if {
	s := object.union(promoted, {"revoked": true, "revokedAt": "2025-06-02T00:00:00Z", "revokedBy": "sec", "reason": "CVE-2025-1"})
	d := decide(review("prod", [img(true, s)])).deny
	d == {sprintf(`container "app": image "reg.example/app@%s" (%s) was revoked from stage "prod" at 2025-06-02T00:00:00Z by sec: CVE-2025-1`, [digest, digest])}
}

test_revoked_without_details if {
	s := object.union(promoted, {"revoked": true})
	d := decide(review("prod", [img(true, s)])).deny
	d == {sprintf(`container "app": image "reg.example/app@%s" (%s) was revoked from stage "prod"`, [digest, digest])}
}

test_digest_error_denied if {
	i := object.union(img(false, {"promoted": false, "revoked": false}), {"digest": "", "error": "registry reg.example unreachable"})
	d := decide(review("dev", [i]))
	d.deny == {`container "app": image "reg.example/app:1.0": cannot learn its digest: registry reg.example unreachable`}
	d.warn == set()
}

test_tag_refused_in_last_stage if {
	d := decide(review("prod", [img(false, promoted)]))
	d.deny == {sprintf(`container "app": image "reg.example/app:1.0" is referenced by tag, which stage "prod" does not allow: pin by digest (reg.example/app@%s)`, [digest])}
	d.warn == set()
}

test_tag_refused_where_allow_tags_false if {
	d := decide(review("test", [img(false, promoted)]))
	d.deny == {sprintf(`container "app": image "reg.example/app:1.0" is referenced by tag, which stage "test" does not allow: pin by digest (reg.example/app@%s)`, [digest])}
}

test_tag_warned_where_allowed if {
	d := decide(review("stage", [img(false, promoted)]))
	d.deny == set()
	d.warn == {sprintf(`container "app": image "reg.example/app:1.0" is referenced by tag and resolved to %s; a tag can move, pin by digest (reg.example/app@%s)`, [digest, digest])}
}

test_init_container_named_by_type if {
	i := object.union(img(true, {"promoted": false, "revoked": false}), {"container": "setup", "type": "initContainer"})
	d := decide(review("dev", [i])).deny
	d == {sprintf(`initContainer "setup": image "reg.example/app@%s" (%s) is not promoted to stage "dev"`, [digest, digest])}
}

test_image_volume_named_by_type if {
	v := object.union(img(true, {"promoted": false, "revoked": false}), {"container": "models", "type": "imageVolume"})
	d := decide(review("dev", [img(true, promoted), v])).deny
	d == {sprintf(`imageVolume "models": image "reg.example/app@%s" (%s) is not promoted to stage "dev"`, [digest, digest])}
}

test_revoked_image_volume_denied if {
	v := object.union(img(true, {"promoted": true, "revoked": true, "reason": "CVE-1"}), {"container": "models", "type": "imageVolume"})
	d := decide(review("dev", [v])).deny
	count(d) == 1
	some msg in d
	startswith(msg, `imageVolume "models": image`)
	contains(msg, "CVE-1")
}

test_each_image_checked if {
	other := object.union(img(true, {"promoted": false, "revoked": false}), {"container": "sidecar"})
	d := decide(review("dev", [img(true, promoted), other])).deny
	d == {sprintf(`container "sidecar": image "reg.example/app@%s" (%s) is not promoted to stage "dev"`, [digest, digest])}
}

test_unknown_stage_denied if {
	d := decide(review("qa", [img(true, promoted)]))
	d.deny == {`stage "qa" is not a known stage (known: dev, test, stage, prod): label the namespace or pod with one of them`}
	d.break_glass_allowed == false
}

test_break_glass_allowed_from_config if {
	decide(review("dev", [img(true, promoted)])).break_glass_allowed == true
	decide(review("prod", [img(true, promoted)])).break_glass_allowed == false
}

test_break_glass_absent_config_refused if {
	c := json.patch(cfg, [{"op": "remove", "path": "/stage/dev/breakGlass"}])
	not admission.break_glass_allowed with input as review("dev", []) with data.stagegate.config as c
}

test_no_images_allowed if {
	decide(review("dev", [])).deny == set()
}

# The cases below sit at the edge of the policy's fast path (quiet): each must
# decide exactly as the full rules do.

test_tag_among_pinned_images_warned if {
	d := decide(review("stage", [img(true, promoted), object.union(img(false, promoted), {"container": "proxy"})]))
	d.deny == set()
	d.warn == {sprintf(`container "proxy": image "reg.example/app:1.0" is referenced by tag and resolved to %s; a tag can move, pin by digest (reg.example/app@%s)`, [digest, digest])}
}

test_revoked_absent_means_not_revoked if {
	decide(review("prod", [img(true, {"promoted": true})])) == {"deny": set(), "warn": set(), "break_glass_allowed": false}
}

test_empty_error_is_no_error if {
	i := object.union(img(true, promoted), {"error": ""})
	decide(review("prod", [i])) == {"deny": set(), "warn": set(), "break_glass_allowed": false}
}

test_images_absent_allowed if {
	inp := json.remove(review("dev", []), ["images"])
	decide(inp) == {"deny": set(), "warn": set(), "break_glass_allowed": true}
}

test_unknown_stage_denied_with_clean_images if {
	d := decide(review("", [img(true, promoted)]))
	d.deny == {`stage "" is not a known stage (known: dev, test, stage, prod): label the namespace or pod with one of them`}
}
