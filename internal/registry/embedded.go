package registry

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Embedded is go-containerregistry's in-memory registry on a loopback port,
// for `serve --dev` and tests. It forgets everything when it stops.
type Embedded struct {
	// Host is "127.0.0.1:port".
	Host string
	srv  *http.Server
}

// StartEmbedded listens on addr (e.g. "127.0.0.1:0") and serves a registry.
func StartEmbedded(addr string, logger *slog.Logger) (*Embedded, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("registry: embedded: %w", err)
	}
	h := ggcrregistry.New(ggcrregistry.Logger(log.New(discard{}, "", 0)))
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("embedded registry stopped", "err", err)
		}
	}()
	return &Embedded{Host: ln.Addr().String(), srv: srv}, nil
}

// Close stops the registry.
func (e *Embedded) Close() error { return e.srv.Close() }

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// Sample names what Seed pushes.
type Sample struct {
	// Image is a single-platform image by tag.
	Image string
	// Index is a two-platform index by tag.
	Index string
}

// Seed pushes small sample images to host so that the quickstart has
// something to promote. The images are built from fixed bytes and times, so
// their digests are the same on every machine.
func Seed(ctx context.Context, host string) (Sample, error) {
	s := Sample{Image: host + "/sample/app:1.0", Index: host + "/sample/multi:1.0"}
	app, err := sampleImage("app", "amd64")
	if err != nil {
		return s, err
	}
	if err := push(ctx, s.Image, app); err != nil {
		return s, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := sampleImage("multi", arch)
		if err != nil {
			return s, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}},
		})
	}
	ref, err := name.ParseReference(s.Index)
	if err != nil {
		return s, fmt.Errorf("registry: seed: %w", err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx)); err != nil {
		return s, fmt.Errorf("registry: seed %s: %w", s.Index, err)
	}
	return s, nil
}

func push(ctx context.Context, ref string, img v1.Image) error {
	r, err := name.ParseReference(ref)
	if err != nil {
		return fmt.Errorf("registry: seed: %w", err)
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("registry: seed %s: %w", ref, err)
	}
	return nil
}

func sampleImage(app, arch string) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := []byte("hello from the stagegate sample " + app + " for " + arch + "\n")
	epoch := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := tw.WriteHeader(&tar.Header{Name: "hello.txt", Mode: 0o644, Size: int64(len(body)), ModTime: epoch}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(body); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		static.NewLayer(buf.Bytes(), types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("registry: sample: %w", err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("registry: sample: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.source": "https://example.com/stagegate/sample-" + app,
		"org.opencontainers.image.title":  "stagegate sample " + app,
	}
	return mutate.ConfigFile(img, cf)
}
