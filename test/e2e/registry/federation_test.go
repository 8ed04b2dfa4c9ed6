package registry

import (
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// Scenario 1: a promotion made in cluster A, with registry attestations,
// is enforced by cluster B from the registry alone; the real cosign CLI
// accepts what A attached; the stage tags follow the promoted digest; and
// the image labels read at promotion time travel with the entry.
func (s *suite) testFederation(t *testing.T) {
	labels := map[string]string{"team": "payments", "org.opencontainers.image.source": "https://example.com/web"}
	ref := pushImage(t, s.reg, "e2e/web", labels)
	digest := digestOf(ref)
	if es := s.b.ledgerEntries(t); len(es) != 0 {
		t.Fatalf("cluster B's ledger holds %d entries before the scenario, want none: %+v", len(es), es)
	}

	s.a.promote(t, ref, "dev", "test", "stage")
	status, body := s.a.promoteAPI(t, ref, "prod")
	if status != http.StatusCreated {
		t.Fatalf("promote to prod in A: %d %s, want 201", status, body)
	}
	rc := decodeReceipt(t, body)
	if !maps.Equal(rc.Entry.Labels, labels) {
		t.Errorf("receipt entry labels = %v, want the image config labels %v", rc.Entry.Labels, labels)
	}
	if st := decodeEnvelope(t, rc.Entry.Envelope); st.PredicateType != promotionType || !maps.Equal(st.Predicate.Labels, labels) {
		t.Errorf("signed predicate: type %q labels %v, want %q and %v", st.PredicateType, st.Predicate.Labels, promotionType, labels)
	}

	t.Run("cosign verifies the attestation", func(t *testing.T) {
		out, err := s.tools.verifyAttestation(t, s.tools.anonymous(t), s.a.cosignPub(), promotionType, ref)
		if err != nil {
			t.Fatalf("cosign verify-attestation with A's key: %v\n%s", err, out)
		}
		if !strings.Contains(out, digest) {
			t.Errorf("cosign output does not name the verified digest %s:\n%s", digest, out)
		}
		// The same attestation under another key must not verify: the
		// check above is a signature check, not a presence check.
		if out, err := s.tools.verifyAttestation(t, s.tools.anonymous(t), s.untrustedPub, promotionType, ref); err == nil {
			t.Errorf("cosign verify-attestation with an unrelated key succeeded:\n%s", out)
		}
	})

	t.Run("stage tags", func(t *testing.T) {
		for _, tag := range []string{"dev", "prod"} {
			if got := s.tools.craneDigest(t, s.tools.anonymous(t), repoOf(ref)+":"+tag); got != digest {
				t.Errorf("crane digest %s:%s = %s, want the promoted digest %s", repoOf(ref), tag, got, digest)
			}
		}
	})

	t.Run("cluster B admits from the registry", func(t *testing.T) {
		ns := s.b.namespace(t, "prod-web", "prod")
		wantAllowed(t, "pod in B's prod namespace", s.b.create(t, pod(ns, "web", ref), false))
		s.promoted = ref

		var prod *ledger.Entry
		for _, e := range s.b.entriesOf(t, digest) {
			if !e.Foreign {
				t.Errorf("B's entry %d for %s is not marked foreign: %+v", e.Index, digest, e)
			}
			if e.Kind == ledger.KindPromotion && e.Stage == "prod" {
				prod = &e
			}
		}
		if prod == nil {
			t.Fatalf("B's ledger holds no foreign prod promotion of %s: %+v", digest, s.b.ledgerEntries(t))
		}
		if !maps.Equal(prod.Labels, labels) {
			t.Errorf("B's imported entry labels = %v, want %v", prod.Labels, labels)
		}
		if got, want := envelopePayload(t, prod.Envelope), envelopePayload(t, rc.Entry.Envelope); got != want {
			t.Errorf("B's imported envelope carries %s, want A's prod attestation %s", got, want)
		}
		// A stage B was not promoted to through the registry stays closed.
		dev := s.b.namespace(t, "dev-web", "dev")
		wantDenied(t, "pod in B's dev namespace", s.b.create(t, pod(dev, "web", ref), true), digest, `"dev"`)
	})
}

// Scenario 1b: attestations shaped like stagegate's, for other digests,
// signed by a key B does not trust, do not make B admit those digests. One
// is made by the real `cosign attest` (an in-toto v0.1 statement); the other
// is exactly what a rogue stagegate would sign (a v1 statement from
// internal/signing), attached with `cosign attach attestation`, so that the
// refusal is down to the key and not to the statement's shape.
func (s *suite) testUntrusted(t *testing.T) {
	ns := s.b.namespace(t, "prod-forged", "prod")
	for name, forge := range map[string]func(t *testing.T, ref string){
		"cosign attest": func(t *testing.T, ref string) {
			pred := map[string]any{
				"stage": "prod", "repository": repoOf(ref), "reason": "forged",
				"requester": map[string]any{"subject": "mallory", "groups": []string{"e2e"}},
				"time":      time.Now().UTC().Format(time.RFC3339), "ledgerIndex": 0,
			}
			s.tools.attest(t, s.untrustedKey, promotionType, pred, ref)
		},
		"stagegate statement": func(t *testing.T, ref string) {
			s.tools.attach(t, s.forgeEnvelope(t, ref), ref)
		},
	} {
		t.Run(name, func(t *testing.T) {
			ref := pushImage(t, s.reg, "e2e/forged-"+strings.ReplaceAll(name, " ", "-"), nil)
			forge(t, ref)
			// The forged attestation is in the registry, valid under its own key.
			if out, err := s.tools.verifyAttestation(t, s.tools.anonymous(t), s.untrustedPub, promotionType, ref); err != nil {
				t.Fatalf("the forged attestation is not in the registry: %v\n%s", err, out)
			}
			wantDenied(t, "digest attested by an untrusted key", s.b.create(t, pod(ns, "forged-"+strings.ReplaceAll(name, " ", "-"), ref), false),
				ref, `is not promoted to stage "prod"`)
			if es := s.b.entriesOf(t, digestOf(ref)); len(es) != 0 {
				t.Errorf("B imported %d entries signed by an untrusted key: %+v", len(es), es)
			}
		})
	}
}

// forgeEnvelope signs a prod promotion of ref with the untrusted key, the
// way stagegate signs its own.
func (s *suite) forgeEnvelope(t *testing.T, ref string) []byte {
	t.Helper()
	signer, err := signing.LoadSigner(s.untrustedKey, []byte(cosignPassword))
	if err != nil {
		t.Fatal(err)
	}
	st, err := signing.NewStatement(repoOf(ref), digestOf(ref), signing.PromotionPredicateType, signing.PromotionPredicate{
		Stage: "prod", Repository: repoOf(ref), Reason: "forged", Time: time.Now().UTC(),
		Requester: signing.Requester{Subject: "mallory", Groups: []string{"e2e"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := signer.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// Scenario 1c: a revocation made in A reaches B's decisions through the
// registry once B re-reads the digest (refresh: 1s).
func (s *suite) testRevocation(t *testing.T) {
	ref := pushImage(t, s.reg, "e2e/revoked", nil)
	s.a.promote(t, ref, toProd...)
	ns := s.b.namespace(t, "prod-revoked", "prod")
	wantAllowed(t, "before revocation", s.b.create(t, pod(ns, "before", ref), true))

	const reason = "CVE-2099-0002 in libbar"
	s.a.mustRun(t, s.a.client("revoke", ref, "--stage", "*", "--reason", reason, "-o", "/dev/null")...)
	out, err := s.tools.verifyAttestation(t, s.tools.anonymous(t), s.a.cosignPub(), revocationType, ref)
	if err != nil {
		t.Fatalf("cosign verify-attestation of the revocation: %v\n%s", err, out)
	}

	deadline := time.Now().Add(20 * time.Second)
	var last error
	for {
		last = s.b.create(t, pod(ns, "after", ref), true)
		if last != nil && strings.Contains(last.Error(), "denied the request") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still does not refuse %s 20s after A revoked it; last answer: %v", ref, last)
		}
		time.Sleep(300 * time.Millisecond)
	}
	wantDenied(t, "after revocation", last, digestOf(ref), reason)
	revoked := false
	for _, e := range s.b.entriesOf(t, digestOf(ref)) {
		revoked = revoked || (e.Kind == ledger.KindRevocation && e.Foreign && e.Stage == ledger.AllStages)
	}
	if !revoked {
		t.Errorf("B's ledger holds no foreign revocation of %s", digestOf(ref))
	}
}

// Scenario 1d: with the registry down, B decides from its local ledger: a
// digest it already imported is admitted, an unknown one fails closed and
// says why. It runs last: it stops the open registry.
func (s *suite) testOutage(t *testing.T) {
	if s.promoted == "" {
		// Not a skip: the scenario this one builds on failed, and a skip
		// would read as "nothing to check here".
		t.Fatal("the federation scenario did not get B to admit an image, so the outage cannot be tested")
	}
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	unknown := s.reg.Repo("e2e/unknown") + "@" + d.String()

	s.reg.Stop()
	ns := s.b.namespace(t, "prod-outage", "prod")
	wantAllowed(t, "known digest, registry down", s.b.create(t, pod(ns, "known", s.promoted), true))
	wantFailedClosed(t, "unknown digest, registry down", s.b.create(t, pod(ns, "unknown", unknown), true),
		unknown, "registry could not be reached")
}
