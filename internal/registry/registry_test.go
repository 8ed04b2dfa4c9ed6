package registry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
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
