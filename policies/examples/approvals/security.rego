# An example a security team adds to the promotion policy: prod needs at
# least one approval from security and one from release. input.approvals
# is absent when the request is made, so the rule applies when the last
# approval completes it (see policies/README.md, "Approvals").
package stagegate.promotion

deny contains msg if {
	input.stage == "prod"
	approvals := input.approvals
	some group in ["security", "release"]
	not approved_by(approvals, group)
	msg := sprintf("prod needs an approval from %s", [group])
}

approved_by(approvals, group) if {
	some a in approvals
	group in a.groups
}
