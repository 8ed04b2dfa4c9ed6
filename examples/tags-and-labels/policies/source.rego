package stagegate.promotion

import rego.v1

# An image label is an input to the policy, never the record of a
# promotion: it is part of the image config, so it cannot change without
# changing the digest, and whoever builds the image chooses it. Here it
# keeps images built outside the organisation out of every stage.
allowed_source := "https://github.com/example/"

deny contains msg if {
	source := object.get(input.image, ["labels", "org.opencontainers.image.source"], "")
	not startswith(source, allowed_source)
	msg := sprintf("image %s was not built from %s (label org.opencontainers.image.source is %q)", [input.image.reference, allowed_source, source])
}
