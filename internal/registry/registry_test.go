package registry

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func startSeeded(t *testing.T) (*Embedded, Sample) {
	t.Helper()
	e, err := StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := Seed(context.Background(), e.Host)
	if err != nil {
		t.Fatal(err)
	}
	return e, s
}

func TestResolve(t *testing.T) {
	e, s := startSeeded(t)
	c := New()
	ctx := context.Background()

	img, err := c.Resolve(ctx, s.Image)
	if err != nil {
		t.Fatal(err)
	}
	if !ValidDigest(img.Digest) || img.Tag != "1.0" || img.Repository != e.Host+"/sample/app" {
		t.Fatalf("unexpected resolution %+v", img)
	}
	if img.Labels["org.opencontainers.image.title"] != "stagegate sample app" {
		t.Fatalf("labels not read: %v", img.Labels)
	}
	if len(img.Platforms) != 0 {
		t.Fatalf("single image has platforms %v", img.Platforms)
	}

	idx, err := c.Resolve(ctx, s.Index)
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Platforms) != 2 {
		t.Fatalf("index platforms = %v, want 2", idx.Platforms)
	}
	if idx.Labels["org.opencontainers.image.title"] != "stagegate sample multi" {
		t.Fatalf("index labels not read: %v", idx.Labels)
	}
	// One build for two platforms: each has the labels the index shows.
	for _, p := range idx.Platforms {
		if !maps.Equal(idx.PlatformLabels[p], idx.Labels) {
			t.Fatalf("labels of platform %s = %v, want %v", p, idx.PlatformLabels[p], idx.Labels)
		}
	}

	// The digest reference resolves to itself, and so does tag@digest.
	byDigest, err := c.Resolve(ctx, img.Repository+"@"+img.Digest)
	if err != nil || byDigest.Digest != img.Digest {
		t.Fatalf("by digest: %v %+v", err, byDigest)
	}
	both, err := c.Resolve(ctx, img.Repository+":other@"+img.Digest)
	if err != nil || both.Digest != img.Digest {
		t.Fatalf("tag@digest: %v %+v", err, both)
	}
	d, err := c.Digest(ctx, s.Image)
	if err != nil || d != img.Digest {
		t.Fatalf("Digest = %q, %v; want %q", d, err, img.Digest)
	}
}

func TestSeedIsDeterministic(t *testing.T) {
	_, s1 := startSeeded(t)
	_, s2 := startSeeded(t)
	c := New()
	a, err := c.Resolve(context.Background(), s1.Image)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.Resolve(context.Background(), s2.Image)
	if err != nil {
		t.Fatal(err)
	}
	if a.Digest != b.Digest {
		t.Fatalf("sample digests differ: %s vs %s", a.Digest, b.Digest)
	}
}

func TestResolveErrors(t *testing.T) {
	e, _ := startSeeded(t)
	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	c := New(WithTimeout(2 * time.Second))
	tests := map[string]struct {
		ref  string
		want error
	}{
		"missing tag":        {e.Host + "/sample/app:nope", ErrNotFound},
		"missing repository": {e.Host + "/nothing/here:1", ErrNotFound},
		"unreachable":        {dead + "/sample/app:1.0", ErrUnreachable},
		"sha512 digest":      {e.Host + "/sample/app@sha512:" + strings.Repeat("a", 128), ErrInvalidReference},
		"uppercase digest":   {e.Host + "/sample/app@sha256:" + strings.Repeat("A", 64), ErrInvalidReference},
		"short digest":       {e.Host + "/sample/app@sha256:abc", ErrInvalidReference},
		"empty":              {"", ErrInvalidReference},
		"spaces":             {" " + e.Host + "/sample/app:1.0", ErrInvalidReference},
		"uppercase repo":     {e.Host + "/Sample/App:1.0", ErrInvalidReference},
		"dot dot":            {e.Host + "/sample/../app:1.0", ErrInvalidReference},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := c.Resolve(context.Background(), tc.ref)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Resolve(%q) error = %v, want %v", tc.ref, err, tc.want)
			}
		})
	}
}

// labelledImage is a small image for arch whose config has labels.
func labelledImage(t *testing.T, arch string, labels map[string]string) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

func TestResolvePlatformLabels(t *testing.T) {
	e, _ := startSeeded(t)
	attestation := mutate.IndexAddendum{
		Add: labelledImage(t, "unknown", nil),
		Descriptor: v1.Descriptor{
			Platform:    &v1.Platform{OS: "unknown", Architecture: "unknown"},
			Annotations: map[string]string{"vnd.docker.reference.type": "attestation-manifest"},
		},
	}
	tests := map[string]struct {
		platforms  map[string]map[string]string // arch -> labels
		attest     bool
		wantLabels map[string]string // of the index
	}{
		"platforms with their own labels": {
			platforms: map[string]map[string]string{
				"amd64": {"team": "a", "org.opencontainers.image.version": "1.0-amd64"},
				"arm64": {"team": "a", "org.opencontainers.image.version": "1.0-arm64", "arm.only": "yes"},
			},
			wantLabels: map[string]string{"team": "a"},
		},
		"an attestation manifest says nothing about the index": {
			platforms: map[string]map[string]string{
				"amd64": {"team": "a"},
				"arm64": {"team": "a"},
			},
			attest:     true,
			wantLabels: map[string]string{"team": "a"},
		},
		"a platform without labels": {
			platforms: map[string]map[string]string{
				"amd64": {"team": "a"},
				"arm64": nil,
			},
		},
	}
	c := New()
	for title, tc := range tests {
		t.Run(title, func(t *testing.T) {
			idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
			want := map[string]map[string]string{} // digest -> labels
			for _, arch := range slices.Sorted(maps.Keys(tc.platforms)) {
				img := labelledImage(t, arch, tc.platforms[arch])
				d, err := img.Digest()
				if err != nil {
					t.Fatal(err)
				}
				want[d.String()] = tc.platforms[arch]
				idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
			}
			if tc.attest {
				idx = mutate.AppendManifests(idx, attestation)
			}
			ref := e.Host + "/labels/" + strings.ReplaceAll(title, " ", "-") + ":1"
			r, err := name.ParseReference(ref)
			if err != nil {
				t.Fatal(err)
			}
			if err := remote.WriteIndex(r, idx); err != nil {
				t.Fatal(err)
			}
			got, err := c.Resolve(context.Background(), ref)
			if err != nil {
				t.Fatal(err)
			}
			wantPlatforms := len(tc.platforms)
			if tc.attest {
				wantPlatforms++
			}
			if len(got.Platforms) != wantPlatforms {
				t.Fatalf("platforms %v, want %d", got.Platforms, wantPlatforms)
			}
			if !maps.Equal(got.Labels, tc.wantLabels) {
				t.Errorf("index labels %v, want %v", got.Labels, tc.wantLabels)
			}
			for _, p := range got.Platforms {
				labels, ok := got.PlatformLabels[p]
				if w, isImage := want[p]; !isImage {
					if ok {
						t.Errorf("attestation manifest %s has labels %v", p, labels)
					}
				} else if !maps.Equal(labels, w) || ok != (len(w) > 0) {
					t.Errorf("labels of platform %s = %v (present %v), want %v", p, labels, ok, w)
				}
			}
			if len(got.PlatformLabels) > len(want) {
				t.Errorf("labels for digests that are not platforms: %v", got.PlatformLabels)
			}
		})
	}
}

// rawManifest is a manifest pushed as the bytes given.
type rawManifest []byte

func (m rawManifest) RawManifest() ([]byte, error) { return m, nil }

// MediaType is what the PUT says it is; a registry refuses an OCI manifest
// sent as Docker's.
func (m rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// pushArtifact pushes an OCI artifact the way `flux push artifact` or
// `helm push` do: a config of its own media type, here not even JSON, and
// one content layer. It is not runnable and has no image config.
func pushArtifact(t *testing.T, ref name.Reference, configType types.MediaType, config []byte) {
	t.Helper()
	cfg := static.NewLayer(config, configType)
	content := static.NewLayer([]byte("apiVersion: v1\nkind: ConfigMap\n"), "application/vnd.cncf.flux.content.v1.tar+gzip")
	for _, l := range []v1.Layer{cfg, content} {
		if err := remote.WriteLayer(ref.Context(), l); err != nil {
			t.Fatal(err)
		}
	}
	desc := func(l v1.Layer) v1.Descriptor {
		d, _ := l.Digest()
		n, _ := l.Size()
		mt, _ := l.MediaType()
		return v1.Descriptor{MediaType: mt, Digest: d, Size: n}
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: types.OCIManifestSchema1, Config: desc(cfg), Layers: []v1.Descriptor{desc(content)}}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(ref, rawManifest(b)); err != nil {
		t.Fatal(err)
	}
}

// TestResolveArtifact: any OCI artifact resolves, so it can be promoted by
// digest like an image. Its config is not an image config, so it has no
// labels, and it is never parsed as one (a Helm chart's or a binary config
// used to fail the promotion).
func TestResolveArtifact(t *testing.T) {
	e, _ := startSeeded(t)
	c := New()
	tests := map[string]struct {
		configType types.MediaType
		config     []byte
	}{
		"flux artifact":    {"application/vnd.cncf.flux.config.v1+json", []byte(`{}`)},
		"helm chart":       {"application/vnd.cncf.helm.config.v1+json", []byte(`{"name":"shop","version":"1.0.0","labels":"not a map"}`)},
		"binary config":    {"application/vnd.example.config.v1", []byte{0xff, 0x00, 0x01}},
		"oci empty config": {"application/vnd.oci.empty.v1+json", []byte(`{}`)},
	}
	for title, tc := range tests {
		t.Run(title, func(t *testing.T) {
			ref, err := name.ParseReference(e.Host + "/shop/config:" + strings.ReplaceAll(title, " ", "-"))
			if err != nil {
				t.Fatal(err)
			}
			pushArtifact(t, ref, tc.configType, tc.config)
			got, err := c.Resolve(context.Background(), ref.String())
			if err != nil {
				t.Fatalf("resolve %s: %v", ref, err)
			}
			if !ValidDigest(got.Digest) || got.Labels != nil || got.Platforms != nil {
				t.Fatalf("resolved %+v", got)
			}
		})
	}
}
