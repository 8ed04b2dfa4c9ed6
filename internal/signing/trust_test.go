package signing

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

const otherDigest = "sha256:fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

// signRaw signs payload as a DSSE envelope without Sign's validation, as
// another tool (`cosign attest`, with in-toto Statement v0.1) would.
func signRaw(t *testing.T, s *Signer, payload string) []byte {
	t.Helper()
	env, err := s.dsse.SignMessage(strings.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func signStatement(t *testing.T, s *Signer, digest, predType string, pred any) []byte {
	t.Helper()
	st, err := NewStatement("registry.example/app", digest, predType, pred)
	if err != nil {
		t.Fatal(err)
	}
	env, err := s.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func TestTrustedEntryCheck(t *testing.T) {
	own, peer, rogue := loadTestKeys(t), loadTestKeys(t), loadTestKeys(t)
	at := time.Unix(1700000000, 0).UTC()
	entry := func(s *Signer, foreign bool) ledger.Entry {
		env := signStatement(t, s, testDigest, PromotionPredicateType, PromotionPredicate{Stage: "prod", Time: at, LedgerIndex: 3})
		return ledger.Entry{Index: 3, Kind: ledger.KindPromotion, Repository: "registry.example/app", Digest: testDigest,
			Stage: "prod", Time: at, Foreign: foreign, Envelope: env}
	}
	tests := []struct {
		name    string
		entry   ledger.Entry
		foreign []*Verifier
		wantErr bool
	}{
		{name: "own entry, own key", entry: entry(own.signer, false), foreign: []*Verifier{peer.verifier}},
		{name: "own entry signed by a peer", entry: entry(peer.signer, false), foreign: []*Verifier{peer.verifier}, wantErr: true},
		{name: "foreign entry, trusted key", entry: entry(peer.signer, true), foreign: []*Verifier{rogue.verifier, peer.verifier}},
		{name: "foreign entry, untrusted key", entry: entry(rogue.signer, true), foreign: []*Verifier{peer.verifier}, wantErr: true},
		{name: "foreign entry signed by our own key only", entry: entry(own.signer, true), foreign: []*Verifier{peer.verifier}, wantErr: true},
		{name: "foreign entry, no trusted keys", entry: entry(peer.signer, true), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := TrustedEntryCheck(own.verifier, tt.foreign)(tt.entry)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tt.wantErr)
			}
		})
	}
}

func TestForeignEntries(t *testing.T) {
	peer, rogue := loadTestKeys(t), loadTestKeys(t)
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	promo := signStatement(t, peer.signer, testDigest, PromotionPredicateType, PromotionPredicate{Stage: "prod", Time: t1.Add(time.Hour)})
	revoke := signStatement(t, peer.signer, testDigest, RevocationPredicateType, RevocationPredicate{Stage: "prod", Reason: "CVE", Time: t1})
	elsewhere := signStatement(t, peer.signer, otherDigest, PromotionPredicateType, PromotionPredicate{Stage: "prod", Time: t1})
	forged := signStatement(t, rogue.signer, testDigest, PromotionPredicateType, PromotionPredicate{Stage: "prod", Time: t1})
	provenance := signStatement(t, peer.signer, testDigest, "https://slsa.dev/provenance/v1", map[string]any{"x": 1})

	got, skipped := ForeignEntries(testDigest, [][]byte{promo, revoke, promo, elsewhere, forged, provenance}, []*Verifier{peer.verifier})
	if len(got) != 2 || !bytes.Equal(got[0].Envelope, revoke) || !bytes.Equal(got[1].Envelope, promo) {
		t.Fatalf("entries %+v, want the revocation then the promotion, once each", got)
	}
	for _, e := range got {
		if !e.Foreign || e.Digest != testDigest {
			t.Errorf("entry %+v is not a foreign entry of %s", e, testDigest)
		}
	}
	if len(skipped) != 3 {
		t.Fatalf("skipped %v, want the other digest's, the forged and the provenance", skipped)
	}
	if !errors.Is(skipped[0], ErrInvalidStatement) || !strings.Contains(skipped[0].Error(), otherDigest) {
		t.Errorf("attestation of another digest skipped with %v, want ErrInvalidStatement naming it", skipped[0])
	}
	for _, err := range skipped[1:] {
		if !errors.Is(err, ErrNotOurs) {
			t.Errorf("skipped with %v, want ErrNotOurs", err)
		}
	}
}

func TestVerifiedEvidence(t *testing.T) {
	pipeline, rogue := loadTestKeys(t), loadTestKeys(t)
	const slsa = "https://slsa.dev/provenance/v1"
	hex := strings.TrimPrefix(testDigest, "sha256:")
	v01 := func(s *Signer, hex, predType, builder string) []byte {
		return signRaw(t, s, `{"_type":"https://in-toto.io/Statement/v0.1","subject":[{"name":"registry.example/app","digest":{"sha256":"`+hex+
			`"}}],"predicateType":"`+predType+`","predicate":{"builder":"`+builder+`"}}`)
	}
	built := v01(pipeline.signer, hex, slsa, "ci")
	second := v01(pipeline.signer, hex, slsa, "second")
	sbom := v01(pipeline.signer, hex, "https://spdx.dev/Document", "sbom")
	elsewhere := v01(pipeline.signer, strings.TrimPrefix(otherDigest, "sha256:"), slsa, "elsewhere")
	forged := v01(rogue.signer, hex, slsa, "rogue")

	tests := []struct {
		name      string
		envelopes [][]byte
		keys      []*Verifier
		types     []string
		want      map[string]string // predicate type → builder
	}{
		{name: "cosign-style statement by the pipeline key", envelopes: [][]byte{built}, keys: []*Verifier{pipeline.verifier}, types: []string{slsa}, want: map[string]string{slsa: "ci"}},
		{name: "all types when none asked", envelopes: [][]byte{built, sbom}, keys: []*Verifier{pipeline.verifier}, want: map[string]string{slsa: "ci", "https://spdx.dev/Document": "sbom"}},
		{name: "type not asked", envelopes: [][]byte{sbom}, keys: []*Verifier{pipeline.verifier}, types: []string{slsa}, want: map[string]string{}},
		{name: "about another digest", envelopes: [][]byte{elsewhere}, keys: []*Verifier{pipeline.verifier}, want: map[string]string{}},
		{name: "signed by an unknown key", envelopes: [][]byte{forged}, keys: []*Verifier{pipeline.verifier}, want: map[string]string{}},
		{name: "no keys", envelopes: [][]byte{built}, want: map[string]string{}},
		{name: "first key's first envelope wins", envelopes: [][]byte{forged, second, built}, keys: []*Verifier{pipeline.verifier, rogue.verifier}, want: map[string]string{slsa: "second"}},
		{name: "not an envelope", envelopes: [][]byte{[]byte("{")}, keys: []*Verifier{pipeline.verifier}, want: map[string]string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := VerifiedEvidence(testDigest, tt.envelopes, tt.keys, tt.types)
			if len(got) != len(tt.want) {
				t.Fatalf("evidence %v, want %v", got, tt.want)
			}
			for typ, builder := range tt.want {
				p, _ := got[typ].(map[string]any)
				if p["builder"] != builder {
					t.Errorf("%s: predicate %v, want builder %q", typ, got[typ], builder)
				}
			}
		})
	}
}
