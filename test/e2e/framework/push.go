package framework

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Media types of an artifact as `flux push artifact` writes it: not an
// image, and nothing a kubelet could run.
const (
	FluxConfigType  types.MediaType = "application/vnd.cncf.flux.config.v1+json"
	FluxContentType types.MediaType = "application/vnd.cncf.flux.content.v1.tar+gzip"
)

type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error) { return m, nil }

// MediaType is what the PUT says it is; a registry refuses an OCI manifest
// sent as Docker's.
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// PushArtifact pushes an OCI artifact holding content to ref (repository
// and tag in this registry) and returns its digest-pinned reference.
func (r *Registry) PushArtifact(t testing.TB, ref string, content []byte) string {
	t.Helper()
	tag, err := name.NewTag(r.Repo(ref), name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{remote.WithTransport(r.Transport()), remote.WithAuth(r.Authenticator())}
	cfg := static.NewLayer([]byte(`{}`), FluxConfigType)
	layer := static.NewLayer(content, FluxContentType)
	var descs []v1.Descriptor
	for _, l := range []v1.Layer{cfg, layer} {
		if err := remote.WriteLayer(tag.Context(), l, opts...); err != nil {
			t.Fatalf("framework: push artifact %s: %v", ref, err)
		}
		d, _ := l.Digest()
		n, _ := l.Size()
		mt, _ := l.MediaType()
		descs = append(descs, v1.Descriptor{MediaType: mt, Digest: d, Size: n})
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: descs[0], Layers: descs[1:]}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(tag, rawManifest(b), opts...); err != nil {
		t.Fatalf("framework: push artifact manifest %s: %v", ref, err)
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return tag.Context().Digest(h.String()).String()
}

// PushRandom writes a new random image (one small layer) to ref, a
// repository and tag in this registry, and returns its digest reference.
// It reports errors instead of failing a test, for load generators that
// run outside the test's goroutine.
func (r *Registry) PushRandom(ref string) (string, error) {
	img, err := random.Image(256, 1)
	if err != nil {
		return "", err
	}
	tag, err := name.NewTag(r.Repo(ref), name.Insecure)
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, remote.WithTransport(r.Transport()), remote.WithAuth(r.Authenticator())); err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	return tag.Context().Digest(d.String()).String(), nil
}
