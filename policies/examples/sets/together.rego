package stagegate.promotion

# The shop's image goes to prod only together with its config artifact, in
# one promotion set: prod must never run a new image with an old config.
# input.set lists every member of the set the image is promoted in, and is
# absent for a single promotion.
deny contains msg if {
	input.stage == "prod"
	endswith(input.image.repository, "/shop/app")
	not with_config
	msg := sprintf("%s goes to prod only in a promotion set with its config (a .../shop/config artifact)", [input.image.repository])
}

with_config if {
	some m in input.set
	endswith(m.repository, "/shop/config")
}
