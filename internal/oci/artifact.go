package oci

import (
	"context"
	"fmt"
	"io"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	ggcrmutate "github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	ggcrstatic "github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/sigstore/cosign/v2/pkg/types"

	"github.com/stagegate/stagegate/internal/registry"
)

// PutEnvelope stores a DSSE envelope as an OCI artifact at reference (a
// tag), replacing what the tag pointed to: one layer of media type
// application/vnd.dsse.envelope.v1+json, as cosign stores an attestation,
// so that registries and tools that list attestations read it too.
// annotations go on the layer.
func (a *Attacher) PutEnvelope(ctx context.Context, reference string, envelope []byte, annotations map[string]string) error {
	ref, err := a.tagRef(reference)
	if err != nil {
		return err
	}
	if _, err := decodeStatement(envelope); err != nil {
		return fmt.Errorf("oci: put %s: %w", ref, err)
	}
	img := ggcrmutate.MediaType(empty.Image, ggcrtypes.OCIManifestSchema1)
	img, err = ggcrmutate.Append(img, ggcrmutate.Addendum{
		Layer:       ggcrstatic.NewLayer(envelope, ggcrtypes.MediaType(types.DssePayloadType)),
		Annotations: annotations,
	})
	if err != nil {
		return fmt.Errorf("oci: put %s: %w", ref, err)
	}
	if err := remote.Write(ref, img, a.ropts(ctx, ref)...); err != nil {
		return classify("put", ref, err)
	}
	return nil
}

// GetEnvelope reads the envelope PutEnvelope stored at reference. It
// refuses an artifact of another shape, and one over limit bytes before
// reading more than that: whoever can write to the registry chooses
// what is there. A missing tag is registry.ErrNotFound.
func (a *Attacher) GetEnvelope(ctx context.Context, reference string, limit int64) ([]byte, error) {
	ref, err := a.tagRef(reference)
	if err != nil {
		return nil, err
	}
	img, err := remote.Image(ref, a.ropts(ctx, ref)...)
	if err != nil {
		return nil, classify("get", ref, err)
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, classify("get", ref, err)
	}
	if len(m.Layers) != 1 || m.Layers[0].MediaType != ggcrtypes.MediaType(types.DssePayloadType) {
		return nil, fmt.Errorf("oci: get %s: %w: want one layer of %s", ref, ErrInvalidEnvelope, types.DssePayloadType)
	}
	if m.Layers[0].Size > limit {
		return nil, fmt.Errorf("oci: get %s: %w: %d bytes, more than the %d allowed", ref, ErrInvalidEnvelope, m.Layers[0].Size, limit)
	}
	l, err := img.LayerByDigest(m.Layers[0].Digest)
	if err != nil {
		return nil, classify("get", ref, err)
	}
	rc, err := l.Compressed()
	if err != nil {
		return nil, classify("get", ref, err)
	}
	defer rc.Close()
	// The remote layer checks its digest once read to the end; the limit
	// keeps a lying size from making that a large read.
	b, err := io.ReadAll(io.LimitReader(rc, limit+1))
	if err != nil {
		return nil, classify("get", ref, err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("oci: get %s: %w: more than the %d bytes allowed", ref, ErrInvalidEnvelope, limit)
	}
	return b, nil
}

// tagRef parses a repository:tag reference with the Attacher's parser.
func (a *Attacher) tagRef(reference string) (name.Tag, error) {
	ref, err := a.parse(reference)
	if err != nil {
		return name.Tag{}, fmt.Errorf("oci: %w: %q: %w", registry.ErrInvalidReference, reference, err)
	}
	t, ok := ref.(name.Tag)
	if !ok {
		return name.Tag{}, fmt.Errorf("oci: %w: %q: want repository:tag", registry.ErrInvalidReference, reference)
	}
	return t, nil
}
