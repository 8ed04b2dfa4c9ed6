package oci

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// blobsPerIndex is what pushIndex makes: two images of a config and two
// layers each.
const blobsPerIndex = 2 * (1 + 2)

func TestCopyIndexWithAttestations(t *testing.T) {
	isolateDockerConfig(t, nil)
	src := startRegistry(t)
	other := startRegistry(t)
	k := newKeys(t)
	srcRepo := src.Repo("team/app")
	digest, children := pushIndex(t, srcRepo)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := NewAttacher()
	ctx := context.Background()

	indexEnv := k.sign(t, srcRepo, digest, signing.PromotionPredicateType, promotion(srcRepo, "stage", at))
	if err := a.Attach(ctx, srcRepo, digest, indexEnv); err != nil {
		t.Fatal(err)
	}
	childEnv := k.sign(t, srcRepo, children[0], signing.PromotionPredicateType, promotion(srcRepo, "stage", at))
	if err := a.Attach(ctx, srcRepo, children[0], childEnv); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		dstRepo string
	}{
		{name: "same registry, other repository", dstRepo: src.Repo("prod/app")},
		{name: "other registry", dstRepo: other.Repo("mirror/app")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var events []ProgressEvent
			record := func(ev ProgressEvent) { events = append(events, ev) }
			if err := a.Copy(ctx, srcRepo, digest, tt.dstRepo, record); err != nil {
				t.Fatal(err)
			}
			last := checkProgress(t, events)
			if last.Layers != blobsPerIndex || last.LayersSkipped != 0 {
				t.Errorf("first copy uploaded %d blobs and skipped %d, want %d and 0", last.Layers, last.LayersSkipped, blobsPerIndex)
			}
			if last.Bytes == 0 {
				t.Error("first copy reports 0 bytes")
			}

			// Same digest, every platform.
			ref, err := name.NewDigest(tt.dstRepo + "@" + digest)
			if err != nil {
				t.Fatal(err)
			}
			idx, err := remote.Index(ref)
			if err != nil {
				t.Fatalf("index not at destination: %v", err)
			}
			if d, _ := idx.Digest(); d.String() != digest {
				t.Errorf("destination digest %s, want %s", d, digest)
			}
			im, err := idx.IndexManifest()
			if err != nil {
				t.Fatal(err)
			}
			var archs []string
			for _, m := range im.Manifests {
				archs = append(archs, m.Platform.Architecture)
				if _, err := remote.Image(ref.Context().Digest(m.Digest.String())); err != nil {
					t.Errorf("platform image %s not at destination: %v", m.Digest, err)
				}
			}
			if !slices.Equal(archs, []string{"amd64", "arm64"}) {
				t.Errorf("destination platforms %v", archs)
			}

			// Attestations travelled, of the index and of a platform image.
			if got := attestationPayloads(t, tt.dstRepo, digest); len(got) != 1 || !bytes.Equal(got[0], indexEnv) {
				t.Errorf("destination index attestations: %d, want our one", len(got))
			}
			if got := attestationPayloads(t, tt.dstRepo, children[0]); len(got) != 1 || !bytes.Equal(got[0], childEnv) {
				t.Errorf("destination platform attestations: %d, want our one", len(got))
			}

			// The destination gets an attestation of its own; a second copy
			// uploads nothing and keeps it.
			own := k.sign(t, tt.dstRepo, digest, signing.PromotionPredicateType, promotion(tt.dstRepo, "prod", at))
			if err := a.Attach(ctx, tt.dstRepo, digest, own); err != nil {
				t.Fatal(err)
			}
			events = nil
			if err := a.Copy(ctx, srcRepo, digest, tt.dstRepo, record); err != nil {
				t.Fatal(err)
			}
			last = checkProgress(t, events)
			if last.Layers != 0 || last.Bytes != 0 || last.LayersSkipped != blobsPerIndex || last.BytesSkipped == 0 {
				t.Errorf("second copy: %+v, want nothing uploaded and %d blobs skipped", last, blobsPerIndex)
			}
			got := attestationPayloads(t, tt.dstRepo, digest)
			if len(got) != 2 || !bytes.Equal(got[0], indexEnv) || !bytes.Equal(got[1], own) {
				t.Errorf("after a second copy the destination has %d attestations, want the copied one then its own", len(got))
			}

			// The real cosign accepts what travelled.
			out, stderr, err := runCosign(t, "verify-attestation", "--key", k.pub(), "--type", signing.PromotionPredicateType,
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref.String())
			if err != nil {
				t.Fatalf("cosign verify-attestation at destination: %v\nstdout: %s\nstderr: %s", err, out, stderr)
			}
		})
	}
}

func TestCopySingleImage(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	srcRepo, dstRepo := reg.Repo("team/app"), reg.Repo("prod/app")
	digest := pushImage(t, srcRepo)
	referrer := pushReferrer(t, srcRepo, digest)
	a := NewAttacher()
	if err := a.Copy(context.Background(), srcRepo, digest, dstRepo, nil); err != nil {
		t.Fatal(err)
	}
	desc, err := remote.Head(mustDigest(t, dstRepo+"@"+digest))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != digest {
		t.Errorf("destination digest %s, want %s", desc.Digest, digest)
	}
	// Nothing was attached at the source, so nothing appears at the destination.
	if got := attestationPayloads(t, dstRepo, digest); len(got) != 0 {
		t.Errorf("%d attestations appeared at the destination", len(got))
	}
	// So does the OCI referrer.
	idx, err := remote.Referrers(mustDigest(t, dstRepo+"@"+digest))
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(im.Manifests) != 1 || im.Manifests[0].Digest.String() != referrer {
		t.Errorf("destination referrers %+v, want %s", im.Manifests, referrer)
	}

	err = a.Copy(context.Background(), srcRepo, "sha256:"+string(bytes.Repeat([]byte("0"), 64)), dstRepo, nil)
	if !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("copy of an absent digest: err = %v, want %v", err, registry.ErrNotFound)
	}
}

// checkProgress checks the invariants of a Copy's events and returns the
// last one.
func checkProgress(t *testing.T, events []ProgressEvent) ProgressEvent {
	t.Helper()
	if len(events) == 0 {
		t.Fatal("no progress events")
	}
	last := events[len(events)-1]
	if !last.Done {
		t.Errorf("last event not Done: %+v", last)
	}
	for i, ev := range events[:len(events)-1] {
		if ev.Done {
			t.Errorf("event %d of %d is Done", i, len(events))
		}
		if ev.BytesDone > ev.Bytes || ev.LayersDone > ev.Layers {
			t.Errorf("event %d overshoots: %+v", i, ev)
		}
		if i > 0 && ev.BytesDone < events[i-1].BytesDone {
			t.Errorf("event %d goes backwards: %+v after %+v", i, ev, events[i-1])
		}
	}
	if last.LayersDone != last.Layers || last.BytesDone != last.Bytes {
		t.Errorf("last event incomplete: %+v", last)
	}
	return last
}

func mustDigest(t *testing.T, s string) name.Digest {
	t.Helper()
	d, err := name.NewDigest(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// pushReferrer pushes an OCI artifact whose subject is repo@digest, the way
// cosign's new bundle format stores attestations, and returns its digest.
func pushReferrer(t *testing.T, repo, digest string) string {
	t.Helper()
	subject, err := remote.Get(mustDigest(t, repo+"@"+digest))
	if err != nil {
		t.Fatal(err)
	}
	art := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	art = mutate.ConfigMediaType(art, "application/vnd.example.evidence+json")
	art = mutate.Subject(art, subject.Descriptor).(v1.Image)
	d, err := art.Digest()
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(mustDigest(t, repo+"@"+d.String()), art); err != nil {
		t.Fatal(err)
	}
	return d.String()
}
