package registry

import (
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
)

// ImageRef is a parsed image reference.
type ImageRef struct {
	// Name is the fully qualified reference, as a resolver is asked.
	Name       string
	Registry   string
	Repository string
	// Tag is informational when Digest is set.
	Tag    string
	Digest string
}

// ParseImage parses a reference the way the kubelet resolves it: Docker
// Hub is the default registry and "latest" the default tag, and a
// reference with both a tag and a digest is pinned by the digest. The
// rules of every reference stagegate reads apply too (see parse).
func ParseImage(s string) (ImageRef, error) {
	r, tag, err := parse(s, false)
	if err != nil {
		return ImageRef{}, err
	}
	out := ImageRef{Name: r.Name(), Registry: r.Context().RegistryStr(), Repository: r.Context().Name(), Tag: tag}
	switch r := r.(type) {
	case name.Digest:
		out.Digest = r.DigestStr()
	case name.Tag:
		out.Tag = r.TagStr()
	}
	return out, nil
}

// parse is the one parse of image references, for the API's references
// (strict: a tag reference must name its registry and tag) and for pods'
// (kubelet defaults). Either way it refuses surrounding space, a digest
// that is not lowercase sha256 (ValidDigest), and a repository with "..".
// A reference with both a tag and a digest is accepted, and the digest is
// what counts, as for the kubelet; the tag is returned beside it.
func parse(ref string, strict bool, opts ...name.Option) (name.Reference, string, error) {
	if strings.TrimSpace(ref) != ref || ref == "" {
		return nil, "", fmt.Errorf("%w: %q", ErrInvalidReference, ref)
	}
	validation := name.WeakValidation
	if strict {
		validation = name.StrictValidation
	}
	var tag string
	if at := strings.LastIndexByte(ref, '@'); at >= 0 {
		if d := ref[at+1:]; !ValidDigest(d) {
			return nil, "", fmt.Errorf("%w: %q: digest must be sha256 and 64 lowercase hex characters", ErrInvalidReference, ref)
		}
		// go-containerregistry's digest references carry no tag; keep it
		// aside, checked, and parse repository@digest.
		repo := ref[:at]
		if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
			if _, err := name.NewTag(repo, name.WeakValidation); err != nil {
				return nil, "", fmt.Errorf("%w: %q: %v", ErrInvalidReference, ref, err)
			}
			repo, tag = repo[:i], repo[i+1:]
		}
		ref = repo + "@" + ref[at+1:]
		validation = name.WeakValidation
	}
	r, err := name.ParseReference(ref, append([]name.Option{validation}, opts...)...)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %q: %v", ErrInvalidReference, ref, err)
	}
	if strings.Contains(r.Context().RepositoryStr(), "..") {
		return nil, "", fmt.Errorf("%w: %q: repository must not contain \"..\"", ErrInvalidReference, ref)
	}
	return r, tag, nil
}
