package oci

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

const slsaV1 = "https://slsa.dev/provenance/v1"

// provenance is a minimal SLSA v1 provenance predicate.
const provenance = `{
  "buildDefinition": {"buildType": "https://ci.example/build/v1", "externalParameters": {"ref": "refs/heads/main"}},
  "runDetails": {"builder": {"id": "https://ci.example/builder"}}
}`

// cosignAttest attests ref with the real `cosign attest`, as a pipeline
// would, without a transparency log.
func cosignAttest(t *testing.T, k testKeys, ref string) {
	t.Helper()
	pred := filepath.Join(t.TempDir(), "provenance.json")
	if err := os.WriteFile(pred, []byte(provenance), 0o600); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := runCosign(t, "attest", "--key", k.key(), "--type", "slsaprovenance1", "--predicate", pred,
		"--tlog-upload=false", "--yes", "--allow-http-registry=true", "--allow-insecure-registry=true", ref)
	if err != nil {
		t.Fatalf("cosign attest: %v\nstdout: %s\nstderr: %s", err, out, stderr)
	}
}

func TestVerifiedEvidence(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	repo := reg.Repo("team/app")
	pipeline, rogue := newKeys(t), newKeys(t)
	built, bare, forged := pushImage(t, repo), pushImage(t, repo), pushImage(t, repo)
	cosignAttest(t, pipeline, repo+"@"+built)
	cosignAttest(t, rogue, repo+"@"+forged)
	trusted := []*signing.Verifier{pipeline.verifier}
	a := NewAttacher()
	// What promotion does: the registry's envelopes, judged by signing.
	verifiedEvidence := func(digest string, keys []*signing.Verifier, types []string) (map[string]any, error) {
		envs, err := a.Attestations(context.Background(), repo, digest)
		if err != nil {
			return nil, err
		}
		return signing.VerifiedEvidence(digest, envs, keys, types), nil
	}

	tests := []struct {
		name    string
		digest  string
		keys    []*signing.Verifier
		types   []string
		wantHas bool
	}{
		{name: "provenance by the pipeline key", digest: built, keys: trusted, types: []string{slsaV1}, wantHas: true},
		{name: "all types when none asked", digest: built, keys: trusted, wantHas: true},
		{name: "type not asked", digest: built, keys: trusted, types: []string{"https://example.com/other/v1"}},
		{name: "no attestation", digest: bare, keys: trusted, types: []string{slsaV1}},
		{name: "signed by an unknown key", digest: forged, keys: trusted, types: []string{slsaV1}},
		{name: "no trusted keys", digest: built, types: []string{slsaV1}},
		{name: "second key verifies", digest: forged, keys: append(slices.Clone(trusted), rogue.verifier), types: []string{slsaV1}, wantHas: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verifiedEvidence(tt.digest, tt.keys, tt.types)
			if err != nil {
				t.Fatal(err)
			}
			pred, ok := got[slsaV1]
			if ok != tt.wantHas {
				t.Fatalf("evidence %v, want provenance: %v", got, tt.wantHas)
			}
			if !tt.wantHas {
				if len(got) != 0 {
					t.Errorf("unexpected evidence %v", got)
				}
				return
			}
			m, _ := pred.(map[string]any)
			run, _ := m["runDetails"].(map[string]any)
			builder, _ := run["builder"].(map[string]any)
			if builder["id"] != "https://ci.example/builder" {
				t.Errorf("provenance predicate not returned as made: %v", pred)
			}
		})
	}

	t.Run("unreachable registry", func(t *testing.T) {
		reg.Stop() // the last use of this registry
		_, err := verifiedEvidence(built, trusted, nil)
		if !errors.Is(err, registry.ErrUnreachable) {
			t.Fatalf("err = %v, want %v", err, registry.ErrUnreachable)
		}
	})
}

func TestForeignEntries(t *testing.T) {
	isolateDockerConfig(t, nil)
	reg := startRegistry(t)
	repo := reg.Repo("team/app")
	digest, bare := pushImage(t, repo), pushImage(t, repo)
	k, rogue := newKeys(t), newKeys(t)
	a := NewAttacher()
	ctx := context.Background()
	t1 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	t2, t3 := t1.Add(time.Hour), t1.Add(2*time.Hour)

	promo := k.sign(t, repo, digest, signing.PromotionPredicateType, signing.PromotionPredicate{
		Stage: "prod", Repository: repo, Platforms: []string{digest},
		Requester: signing.Requester{Subject: "ci", Groups: []string{"pipelines"}},
		Reason:    "release", Time: t2, LedgerIndex: 7, Labels: map[string]string{"team": "a"},
	})
	// Attached after the promotion but timed before it: entries come out
	// in predicate time order, not attachment order.
	revoke := k.sign(t, repo, digest, signing.RevocationPredicateType, signing.RevocationPredicate{
		Stage: ledger.AllStages, Repository: repo, Requester: signing.Requester{Subject: "sec"}, Reason: "CVE", Time: t1, LedgerIndex: 8,
	})
	forged := rogue.sign(t, repo, digest, signing.PromotionPredicateType, promotion(repo, "prod", t3))
	other := k.sign(t, repo, digest, slsaV1, map[string]any{"buildDefinition": map[string]any{}})
	for _, env := range [][]byte{promo, revoke, forged, other} {
		if err := a.Attach(ctx, repo, digest, env); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name   string
		digest string
		keys   []*signing.Verifier
		want   []ledger.Entry
	}{
		{name: "trusted key", digest: digest, keys: []*signing.Verifier{k.verifier}, want: []ledger.Entry{
			{Kind: ledger.KindRevocation, Repository: repo, Digest: digest, Stage: ledger.AllStages, Subject: "sec",
				Reason: "CVE", Time: t1, Foreign: true, Envelope: revoke},
			{Kind: ledger.KindPromotion, Repository: repo, Digest: digest, Platforms: []string{digest}, Stage: "prod",
				Subject: "ci", Groups: []string{"pipelines"}, Reason: "release", Time: t2,
				Labels: map[string]string{"team": "a"}, Foreign: true, Envelope: promo},
		}},
		{name: "no trusted key", digest: digest},
		{name: "only the rogue key", digest: digest, keys: []*signing.Verifier{rogue.verifier}, want: []ledger.Entry{
			{Kind: ledger.KindPromotion, Repository: repo, Digest: digest, Stage: "prod", Subject: "ci",
				Groups: []string{"pipelines"}, Reason: "release", Time: t3, Labels: map[string]string{"team": "a"},
				Foreign: true, Envelope: forged},
		}},
		{name: "no attestations", digest: bare, keys: []*signing.Verifier{k.verifier}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			envs, err := a.Attestations(ctx, repo, tt.digest)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := signing.ForeignEntries(tt.digest, envs, tt.keys)
			if len(got) != len(tt.want) {
				t.Fatalf("%d entries, want %d: %+v", len(got), len(tt.want), got)
			}
			for i, e := range got {
				w := tt.want[i]
				if !bytes.Equal(e.Envelope, w.Envelope) {
					t.Errorf("entry %d: envelope is not the original", i)
				}
				e.Envelope, w.Envelope = nil, nil
				if !equalEntries(e, w) {
					t.Errorf("entry %d:\n got %+v\nwant %+v", i, e, w)
				}
			}
			// What the ledger will check on import must hold.
			for i, e := range got {
				if err := signing.CheckEntry(tt.keys[0])(e); err != nil {
					t.Errorf("entry %d fails ledger verification: %v", i, err)
				}
			}
		})
	}
}

func equalEntries(a, b ledger.Entry) bool {
	return a.Kind == b.Kind && a.Repository == b.Repository && a.Digest == b.Digest &&
		slices.Equal(a.Platforms, b.Platforms) && a.Stage == b.Stage && a.Subject == b.Subject &&
		slices.Equal(a.Groups, b.Groups) && a.Reason == b.Reason && a.Time.Equal(b.Time) &&
		maps.Equal(a.Labels, b.Labels) &&
		a.Foreign == b.Foreign && a.Index == b.Index
}
