package oci

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// TestAttachVerifiedByCosign attaches promotion and revocation attestations
// and has the real cosign CLI verify them, as issue 4 asks.
func TestAttachVerifiedByCosign(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	k := newKeys(t)
	other := newKeys(t)
	repo := reg.Repo("team/app")
	digest := pushImage(t, repo)
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	a := NewAttacher()
	ctx := context.Background()

	tests := []struct {
		name          string
		predicateType string
		predicate     any
	}{
		{name: "promotion", predicateType: signing.PromotionPredicateType, predicate: promotion(repo, "prod", at)},
		{name: "revocation", predicateType: signing.RevocationPredicateType, predicate: signing.RevocationPredicate{
			Stage: "prod", Repository: repo, Requester: signing.Requester{Subject: "sec"}, Reason: "CVE", Time: at, LedgerIndex: 4,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := k.sign(t, repo, digest, tt.predicateType, tt.predicate)
			before := len(attestationPayloads(t, repo, digest))
			if err := a.Attach(ctx, repo, digest, env); err != nil {
				t.Fatal(err)
			}
			// Attaching again must not add a second copy.
			if err := a.Attach(ctx, repo, digest, env); err != nil {
				t.Fatal(err)
			}
			got := attestationPayloads(t, repo, digest)
			if len(got) != before+1 {
				t.Fatalf("%d attestations after attaching one twice, want %d", len(got), before+1)
			}
			if !bytes.Equal(got[len(got)-1], env) {
				t.Errorf("stored envelope differs from the attached one")
			}

			ref := repo + "@" + digest
			out, stderr, err := runCosign(t, "verify-attestation", "--key", k.pub(), "--type", tt.predicateType,
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref)
			if err != nil {
				t.Fatalf("cosign verify-attestation: %v\nstdout: %s\nstderr: %s", err, out, stderr)
			}
			if !cosignPrinted(t, out, env) {
				t.Errorf("cosign output does not hold our envelope:\n%s", out)
			}

			out, stderr, err = runCosign(t, "verify-attestation", "--key", other.pub(), "--type", tt.predicateType,
				"--insecure-ignore-tlog=true", "--allow-http-registry=true", "--allow-insecure-registry=true", ref)
			if err == nil {
				t.Errorf("cosign verified with another key:\nstdout: %s\nstderr: %s", out, stderr)
			}
			if !strings.Contains(stderr, "no matching attestations") {
				t.Errorf("cosign failed for another reason than the key:\n%s", stderr)
			}
		})
	}
}

// cosignPrinted reports whether cosign printed env (it prints one verified
// envelope per line).
func cosignPrinted(t *testing.T, out string, env []byte) bool {
	t.Helper()
	var want struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &want); err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(out) {
		var got struct {
			Payload string `json:"payload"`
		}
		if json.Unmarshal([]byte(line), &got) == nil && got.Payload == want.Payload {
			return true
		}
	}
	return false
}

func TestAttachRejects(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	k := newKeys(t)
	repo := reg.Repo("team/app")
	digest := pushImage(t, repo)
	otherDigest := pushImage(t, repo)
	absent := "sha256:" + strings.Repeat("ab", 32)
	at := time.Unix(1700000000, 0).UTC()

	tests := []struct {
		name     string
		repo     string
		digest   string
		envelope []byte
		want     error
	}{
		{name: "not json", repo: repo, digest: digest, envelope: []byte("nope"), want: ErrInvalidEnvelope},
		{name: "wrong payload type", repo: repo, digest: digest, envelope: []byte(`{"payloadType":"text/plain","payload":"e30=","signatures":[]}`), want: ErrInvalidEnvelope},
		{name: "subject is another digest", repo: repo, digest: digest,
			envelope: k.sign(t, repo, otherDigest, signing.PromotionPredicateType, promotion(repo, "prod", at)), want: ErrInvalidEnvelope},
		{name: "image absent", repo: repo, digest: absent,
			envelope: k.sign(t, repo, absent, signing.PromotionPredicateType, promotion(repo, "prod", at)), want: registry.ErrNotFound},
		{name: "bad digest", repo: repo, digest: "sha256:xyz", envelope: []byte("{}"), want: registry.ErrInvalidReference},
		{name: "bad repository", repo: "UPPER/case", digest: digest, envelope: []byte("{}"), want: registry.ErrInvalidReference},
	}
	a := NewAttacher()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.Attach(context.Background(), tt.repo, tt.digest, tt.envelope)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	if n := len(attestationPayloads(t, repo, digest)); n != 0 {
		t.Errorf("%d attestations left behind by rejected attaches", n)
	}
}

func TestMoveTag(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	repo := reg.Repo("team/app")
	first, second := pushImage(t, repo), pushImage(t, repo)
	a := NewAttacher()
	ctx := context.Background()

	tests := []struct {
		name    string
		digest  string
		tag     string
		want    string
		wantErr error
	}{
		{name: "create", digest: first, tag: "prod", want: first},
		{name: "move", digest: second, tag: "prod", want: second},
		{name: "other tag untouched by move", digest: first, tag: "stage", want: first},
		{name: "invalid tag", digest: first, tag: "no/slash", wantErr: registry.ErrInvalidReference},
		{name: "absent digest", digest: "sha256:" + strings.Repeat("cd", 32), tag: "prod", wantErr: registry.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := a.MoveTag(ctx, repo, tt.digest, tt.tag)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != nil {
				return
			}
			desc, err := remote.Head(mustTag(t, repo+":"+tt.tag))
			if err != nil {
				t.Fatal(err)
			}
			if got := desc.Digest.String(); got != tt.want {
				t.Errorf("%s:%s -> %s, want %s", repo, tt.tag, got, tt.want)
			}
		})
	}
	// The failed move above left prod where it was.
	desc, err := remote.Head(mustTag(t, repo+":prod"))
	if err != nil {
		t.Fatal(err)
	}
	if desc.Digest.String() != second {
		t.Errorf("prod -> %s after a failed move, want %s", desc.Digest, second)
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
