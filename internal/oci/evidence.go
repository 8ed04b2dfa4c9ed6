package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// TrustedKey is a public key whose attestations count as evidence, e.g. the
// key of a build pipeline.
type TrustedKey struct {
	// Name identifies the key in logs.
	Name     string
	Verifier signature.Verifier
}

// LoadTrustedKey makes a TrustedKey of a PEM public key (a cosign.pub),
// loaded the way `cosign verify-attestation --key` loads it.
func LoadTrustedKey(keyName string, pubPEM []byte) (TrustedKey, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return TrustedKey{}, fmt.Errorf("oci: trusted key %q: %w", keyName, err)
	}
	v, err := signature.LoadDefaultVerifier(pub, *cosign.GetDefaultLoadOptions(nil)...)
	if err != nil {
		return TrustedKey{}, fmt.Errorf("oci: trusted key %q: %w", keyName, err)
	}
	return TrustedKey{Name: keyName, Verifier: v}, nil
}

// attestations fetches the attestations stored under the cosign .att tag of
// ref. A missing tag is no attestations; any other registry failure is an
// error.
func (a *Attacher) attestations(ctx context.Context, ref name.Digest) (oci.Signatures, []oci.Signature, error) {
	opts := a.coopts(ctx, ref)
	tag, err := ociremote.AttestationTag(ref, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("oci: attestations of %s: %w", ref, err)
	}
	sigs, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return nil, nil, classify("read attestations of", ref, err)
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, nil, classify("read attestations of", ref, err)
	}
	return sigs, list, nil
}

// VerifiedEvidence returns the predicates of the attestations on
// repository@digest that one of keys verifies (with cosign's verification,
// without a transparency log) and whose subject is the digest, keyed by
// predicate type. Only the given predicate types are returned; none means
// all. Attestations that no key verifies are skipped, not errors; a registry
// failure is an error. Without keys nothing can verify, and the registry is
// not asked. When several verified attestations have one type, the
// first key's first wins.
func (a *Attacher) VerifiedEvidence(ctx context.Context, repository, digest string, keys []TrustedKey, predicateTypes []string) (map[string]any, error) {
	ref, err := a.parseDigest(repository, digest)
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if len(keys) == 0 {
		return out, nil
	}
	sigs, atts, err := a.attestations(ctx, ref)
	if err != nil {
		return nil, err
	}
	if len(atts) == 0 {
		return out, nil
	}
	h, err := v1.NewHash(ref.DigestStr())
	if err != nil {
		return nil, fmt.Errorf("oci: %w: %v", ErrInvalidReference, err)
	}
	for _, k := range keys {
		co := &cosign.CheckOpts{
			SigVerifier:   k.Verifier,
			IgnoreTlog:    true,
			ClaimVerifier: cosign.IntotoSubjectClaimVerifier,
		}
		verified, _, err := cosign.VerifyImageAttestation(ctx, sigs, h, co)
		if err != nil {
			// cosign fails when none verifies; that is "no evidence".
			a.log.DebugContext(ctx, "no evidence verified", "image", ref.String(), "key", k.Name, "err", err)
			continue
		}
		for _, s := range verified {
			env, err := s.Payload()
			if err != nil {
				continue
			}
			st, err := decodeStatement(env)
			if err != nil {
				continue
			}
			if len(predicateTypes) > 0 && !slices.Contains(predicateTypes, st.PredicateType) {
				continue
			}
			if _, seen := out[st.PredicateType]; seen {
				continue
			}
			var pred any
			if err := json.Unmarshal(st.Predicate, &pred); err != nil {
				continue
			}
			out[st.PredicateType] = pred
			a.log.DebugContext(ctx, "verified evidence", "image", ref.String(), "key", k.Name, "predicateType", st.PredicateType)
		}
	}
	return out, nil
}

// ForeignEntries reads the promotion and revocation attestations on
// repository@digest made by another stagegate, keeps those that one of keys
// verifies and whose subject is the digest, and returns them as ledger
// entries to import (Foreign, with the original envelope; Index is left to
// the importing ledger), sorted by the time in their predicate. A registry
// failure is an error; an unverifiable attestation is skipped.
func (a *Attacher) ForeignEntries(ctx context.Context, repository, digest string, keys []*signing.Verifier) ([]ledger.Entry, error) {
	ref, err := a.parseDigest(repository, digest)
	if err != nil {
		return nil, err
	}
	_, atts, err := a.attestations(ctx, ref)
	if err != nil {
		return nil, err
	}
	var out []ledger.Entry
	seen := map[string]bool{}
	for _, s := range atts {
		env, err := s.Payload()
		if err != nil {
			return nil, classify("read attestations of", ref, err)
		}
		if seen[string(env)] {
			continue
		}
		e, ok := a.foreignEntry(ctx, ref, env, keys)
		if !ok {
			continue
		}
		seen[string(env)] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.Before(out[j].Time) })
	return out, nil
}

func (a *Attacher) foreignEntry(ctx context.Context, ref name.Digest, env []byte, keys []*signing.Verifier) (ledger.Entry, bool) {
	// Whether it counts is signing's decision; this package only fetches.
	e, err := signing.ForeignEntry(env, keys)
	switch {
	case errors.Is(err, signing.ErrNotOurs):
		a.log.DebugContext(ctx, "skipped attestation", "image", ref.String(), "err", err)
		return ledger.Entry{}, false
	case err != nil:
		a.log.WarnContext(ctx, "skipped a malformed foreign attestation", "image", ref.String(), "err", err)
		return ledger.Entry{}, false
	case e.Digest != ref.DigestStr():
		a.log.WarnContext(ctx, "foreign attestation is about another digest", "image", ref.String(), "subject", e.Digest)
		return ledger.Entry{}, false
	}
	return e, true
}
