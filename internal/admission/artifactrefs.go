package admission

import "fmt"

// ArtifactReference is one OCI artifact that an object of a GitOps kind
// (Flux's OCIRepository, Argo CD's Application) makes its controller
// deploy, as admission reads it.
type ArtifactReference struct {
	// Source names where the object holds it: the object's name for an
	// OCIRepository, "source" or "sources[i]" for an Application; a
	// review's TracedImage.Container is the same.
	Source string
	// Reference is the artifact as admission checks it: repository@digest
	// or repository:tag.
	Reference string
}

// ArtifactReferences returns the OCI artifacts that raw, an object of the
// artifact kind group/kind, makes its controller deploy, with the
// extraction admission decides on: continuous validation lists them
// without a second reading of the kinds. It fails for a kind that is no
// artifact kind, and for an object admission would refuse as unreadable.
func ArtifactReferences(group, kind string, raw []byte) ([]ArtifactReference, error) {
	k, ok := lookupArtifactKind(group, kind)
	if !ok {
		return nil, fmt.Errorf("admission: %s.%s is not a kind that deploys an OCI artifact", kind, group)
	}
	images, _, err := k.artifacts(raw, artifactContext{})
	if err != nil {
		return nil, fmt.Errorf("admission: %s: %w", kind, err)
	}
	out := make([]ArtifactReference, len(images))
	for i, im := range images {
		out[i] = ArtifactReference{Source: im.Container, Reference: im.Image}
	}
	return out, nil
}
