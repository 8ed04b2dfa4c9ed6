package oci

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/stagegate/stagegate/internal/registry"
)

// ProgressEvent reports how far a Copy is. Layers and Bytes count the blobs
// (layers and configs of every platform) the destination lacked and that
// Copy uploads; LayersSkipped and BytesSkipped the ones already there.
// Signature and attestation artifacts are small and not counted.
type ProgressEvent struct {
	Layers, LayersDone int
	Bytes, BytesDone   int64
	LayersSkipped      int
	BytesSkipped       int64
	// Done is set on the last event of a successful copy.
	Done bool
}

// Progress receives progress events. Copy calls it from one goroutine at a
// time, so it need not be safe for concurrent use; it should return quickly.
type Progress func(ev ProgressEvent)

// blob is one blob of the image to copy.
type blob struct {
	layer v1.Layer
	size  int64
}

// Copy copies srcRepository@digest to dstRepository under the same digest:
// an image, or an index with every platform image. Then the cosign signature
// and attestation tags (sha256-<hex>.sig/.att) of the digest and of each
// platform image are merged into the destination's, and OCI referrers of the
// digest are copied. Blobs the destination already has are not uploaded
// again. progress may be nil.
func (a *Attacher) Copy(ctx context.Context, srcRepository, digest, dstRepository string, progress Progress) error {
	src, err := a.parseDigest(srcRepository, digest)
	if err != nil {
		return err
	}
	dst, err := a.parseDigest(dstRepository, digest)
	if err != nil {
		return err
	}
	dstRepo := dst.Repository
	if progress == nil {
		progress = func(ProgressEvent) {}
	}

	desc, err := remote.Get(src, a.ropts(ctx, src)...)
	if err != nil {
		return classify("copy", src, err)
	}
	var (
		write     func() error
		blobs     = map[v1.Hash]blob{}
		manifests = []v1.Hash{desc.Digest}
	)
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return classify("copy", src, err)
		}
		children, err := indexBlobs(idx, blobs)
		if err != nil {
			return classify("copy", src, err)
		}
		manifests = append(manifests, children...)
		write = func() error { return remote.WriteIndex(dst, idx, a.ropts(ctx, dst)...) }
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return classify("copy", src, err)
		}
		if err := imageBlobs(img, blobs); err != nil {
			return classify("copy", src, err)
		}
		write = func() error { return remote.Write(dst, img, a.ropts(ctx, dst)...) }
	default:
		return fmt.Errorf("oci: copy %s: %w: unsupported media type %q", src, registry.ErrUnreachable, desc.MediaType)
	}

	var ev ProgressEvent
	var missing []blob
	// Sorted, so that uploads and events come in the same order each time.
	order := slices.SortedFunc(maps.Keys(blobs), func(x, y v1.Hash) int { return strings.Compare(x.String(), y.String()) })
	for _, h := range order {
		b := blobs[h]
		l, err := remote.Layer(dstRepo.Digest(h.String()), a.ropts(ctx, dst)...)
		if err != nil {
			return classify("copy to", dst, err)
		}
		ok, err := partial.Exists(l)
		if err != nil {
			return classify("copy to", dst, err)
		}
		if ok {
			ev.LayersSkipped++
			ev.BytesSkipped += b.size
			continue
		}
		missing = append(missing, b)
		ev.Layers++
		ev.Bytes += b.size
	}
	progress(ev)
	for _, b := range missing {
		if err := a.uploadBlob(ctx, dst, b, &ev, progress); err != nil {
			return classify("copy to", dst, err)
		}
	}
	// Every blob is there now; this writes the manifests, children first,
	// and skips those that exist.
	if err := write(); err != nil {
		return classify("copy to", dst, err)
	}
	for _, h := range manifests {
		if err := a.copyCosignTags(ctx, src.Context().Digest(h.String()), dstRepo.Digest(h.String())); err != nil {
			return err
		}
	}
	if err := a.copyReferrers(ctx, src, dst); err != nil {
		return err
	}
	ev.Done = true
	progress(ev)
	a.log.InfoContext(ctx, "copied image", "from", src.String(), "to", dst.String(),
		"layers", ev.Layers, "bytes", ev.Bytes, "layersSkipped", ev.LayersSkipped)
	return nil
}

// uploadBlob uploads one blob with go-containerregistry (which mounts it
// from the source repository when both are on one registry), relaying its
// byte progress.
func (a *Attacher) uploadBlob(ctx context.Context, dst name.Digest, b blob, ev *ProgressEvent, progress Progress) error {
	updates := make(chan v1.Update, 16)
	errc := make(chan error, 1)
	opts := append(a.ropts(ctx, dst), remote.WithProgress(updates))
	go func() { errc <- remote.WriteLayer(dst.Repository, b.layer, opts...) }()
	base := ev.BytesDone
	for u := range updates {
		if u.Error != nil {
			continue // also returned by WriteLayer
		}
		ev.BytesDone = base + min(u.Complete, b.size)
		progress(*ev)
	}
	if err := <-errc; err != nil {
		return err
	}
	ev.BytesDone = base + b.size
	ev.LayersDone++
	progress(*ev)
	return nil
}

// indexBlobs adds the blobs of every image of idx (recursively) to blobs and
// returns the digests of the child manifests.
func indexBlobs(idx v1.ImageIndex, blobs map[v1.Hash]blob) ([]v1.Hash, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var children []v1.Hash
	for _, m := range im.Manifests {
		children = append(children, m.Digest)
		switch {
		case m.MediaType.IsIndex():
			child, err := idx.ImageIndex(m.Digest)
			if err != nil {
				return nil, err
			}
			grand, err := indexBlobs(child, blobs)
			if err != nil {
				return nil, err
			}
			children = append(children, grand...)
		case m.MediaType.IsImage():
			img, err := idx.Image(m.Digest)
			if err != nil {
				return nil, err
			}
			if err := imageBlobs(img, blobs); err != nil {
				return nil, err
			}
		}
	}
	return children, nil
}

// imageBlobs adds the config and layers of img to blobs.
func imageBlobs(img v1.Image, blobs map[v1.Hash]blob) error {
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	cfg, err := partial.ConfigLayer(img)
	if err != nil {
		return err
	}
	blobs[m.Config.Digest] = blob{layer: cfg, size: m.Config.Size}
	for _, d := range m.Layers {
		if !d.MediaType.IsDistributable() {
			continue // foreign layers stay where their URLs point
		}
		l, err := img.LayerByDigest(d.Digest)
		if err != nil {
			return err
		}
		blobs[d.Digest] = blob{layer: l, size: d.Size}
	}
	return nil
}

// copyCosignTags merges the signatures and attestations stored under the
// cosign tags of src into those of dst. Merging rather than overwriting keeps
// what the destination already had, e.g. attestations of its own stage.
func (a *Attacher) copyCosignTags(ctx context.Context, src, dst name.Digest) error {
	srcOpts, dstOpts := a.coopts(ctx, src), a.coopts(ctx, dst)
	kinds := []struct {
		tag    func(name.Reference, ...ociremote.Option) (name.Tag, error)
		attach func(oci.SignedEntity, oci.Signature, ...mutate.SignOption) (oci.SignedEntity, error)
		write  func(name.Repository, oci.SignedEntity, ...ociremote.Option) error
	}{
		{ociremote.SignatureTag, mutate.AttachSignatureToEntity, ociremote.WriteSignatures},
		{ociremote.AttestationTag, mutate.AttachAttestationToEntity, ociremote.WriteAttestations},
	}
	for _, k := range kinds {
		tag, err := k.tag(src, srcOpts...)
		if err != nil {
			return fmt.Errorf("oci: copy %s: %w", src, err)
		}
		sigs, err := ociremote.Signatures(tag, srcOpts...) // a missing tag is no signatures
		if err != nil {
			return classify("copy", tag, err)
		}
		list, err := sigs.Get()
		if err != nil {
			return classify("copy", tag, err)
		}
		if len(list) == 0 {
			continue
		}
		se := ociremote.SignedUnknown(dst, dstOpts...)
		for _, s := range list {
			if se, err = k.attach(se, s, mutate.WithDupeDetector(sameLayer{})); err != nil {
				return classify("copy", tag, err)
			}
		}
		if err := k.write(dst.Repository, se, dstOpts...); err != nil {
			return classify("copy to", dst, err)
		}
	}
	return nil
}

// copyReferrers copies the OCI 1.1 referrers of src (e.g. attestations
// written with cosign's new bundle format) to dst. go-containerregistry
// falls back to the referrers tag schema on registries without the API, for
// reading and writing alike.
func (a *Attacher) copyReferrers(ctx context.Context, src, dst name.Digest) error {
	idx, err := remote.Referrers(src, a.ropts(ctx, src)...)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return classify("copy referrers of", src, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return classify("copy referrers of", src, err)
	}
	for _, m := range im.Manifests {
		from := src.Context().Digest(m.Digest.String())
		to := dst.Context().Digest(m.Digest.String())
		desc, err := remote.Get(from, a.ropts(ctx, from)...)
		if err != nil {
			return classify("copy referrer", from, err)
		}
		switch {
		case desc.MediaType.IsIndex():
			ii, err := desc.ImageIndex()
			if err == nil {
				err = remote.WriteIndex(to, ii, a.ropts(ctx, to)...)
			}
			if err != nil {
				return classify("copy referrer to", to, err)
			}
		default:
			img, err := desc.Image()
			if err == nil {
				err = remote.Write(to, img, a.ropts(ctx, to)...)
			}
			if err != nil {
				return classify("copy referrer to", to, err)
			}
		}
	}
	return nil
}
