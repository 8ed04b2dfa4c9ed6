package signing

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// ErrNotOurs is returned by ForeignEntry for an envelope that a trusted key
// verifies but that is no promotion or revocation of a stagegate (e.g. a
// build's SLSA provenance), or that no trusted key verifies: not an error
// of the registry, nothing to import.
var ErrNotOurs = errors.New("not a stagegate promotion or revocation by a trusted key")

// foreignPredicate holds the fields of the promotion and revocation
// predicates that become entry fields.
type foreignPredicate struct {
	Stage       string            `json:"stage"`
	Platforms   []string          `json:"platforms"`
	Requester   Requester         `json:"requester"`
	Reason      string            `json:"reason"`
	Time        time.Time         `json:"time"`
	Labels      map[string]string `json:"labels"`
	LedgerIndex uint64            `json:"ledgerIndex"`
}

// ForeignEntry decides whether another stagegate's attestation counts here:
// one of keys must verify it, it must be a promotion or a revocation, and
// about one digest (what stagegate signs, and what CheckEntry checks again
// when the ledger is verified). It returns the entry to import: Foreign,
// with the original envelope, Index left to the importing ledger.
func ForeignEntry(envelope []byte, keys []*Verifier) (ledger.Entry, error) {
	for _, v := range keys {
		st, err := v.Verify(envelope)
		if err != nil {
			continue
		}
		var kind ledger.Kind
		switch st.PredicateType {
		case PromotionPredicateType:
			kind = ledger.KindPromotion
		case RevocationPredicateType:
			kind = ledger.KindRevocation
		default:
			return ledger.Entry{}, fmt.Errorf("signing: %w: predicate type %q", ErrNotOurs, st.PredicateType)
		}
		if len(st.Subject) != 1 {
			return ledger.Entry{}, fmt.Errorf("signing: %w: %d subjects, want one", ErrInvalidStatement, len(st.Subject))
		}
		hex := st.Subject[0].Digest["sha256"]
		if _, err := parseDigest("sha256:" + hex); err != nil {
			return ledger.Entry{}, fmt.Errorf("signing: %w: subject digest: %w", ErrInvalidStatement, err)
		}
		var p foreignPredicate
		if err := json.Unmarshal(st.Predicate, &p); err != nil || p.Stage == "" {
			return ledger.Entry{}, fmt.Errorf("signing: %w: malformed %s predicate", ErrInvalidStatement, kind)
		}
		return ledger.Entry{
			Kind:       kind,
			Repository: st.Subject[0].Name,
			Digest:     "sha256:" + hex,
			Platforms:  p.Platforms,
			Stage:      p.Stage,
			Subject:    p.Requester.Subject,
			Groups:     p.Requester.Groups,
			Reason:     p.Reason,
			Time:       p.Time,
			Labels:     p.Labels,
			Foreign:    true,
			Envelope:   json.RawMessage(slices.Clone(envelope)),
		}, nil
	}
	return ledger.Entry{}, fmt.Errorf("signing: %w", ErrNotOurs)
}

// ForeignEntries decides which of the envelopes attached to an image with
// the given digest count here, as ForeignEntry does for each, and also
// that each is about that digest: a promotion of another image, copied
// next to this one, must not promote it. It returns the entries to import,
// each envelope once, in the time order of their predicates, and why each
// other envelope was skipped (ErrNotOurs for what is simply not a trusted
// stagegate's; anything else is malformed or misplaced).
func ForeignEntries(digest string, envelopes [][]byte, keys []*Verifier) (entries []ledger.Entry, skipped []error) {
	seen := map[string]bool{}
	for _, env := range envelopes {
		if seen[string(env)] {
			continue
		}
		seen[string(env)] = true
		e, err := ForeignEntry(env, keys)
		if err == nil && e.Digest != digest {
			err = fmt.Errorf("signing: %w: attestation is about %s, not %s", ErrInvalidStatement, e.Digest, digest)
		}
		if err != nil {
			skipped = append(skipped, err)
			continue
		}
		entries = append(entries, e)
	}
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.Before(entries[j].Time) })
	return entries, skipped
}

// SourceIndex returns the ledger index that the stagegate which signed a
// foreign entry's envelope gave it. It does not verify: it orders entries
// that ForeignEntry accepted, where two of one signed instant need their
// source's order.
func SourceIndex(envelope []byte) (uint64, bool) {
	var env struct {
		Payload string `json:"payload"`
	}
	if json.Unmarshal(envelope, &env) != nil {
		return 0, false
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return 0, false
	}
	var st struct {
		Predicate struct {
			LedgerIndex *uint64 `json:"ledgerIndex"`
		} `json:"predicate"`
	}
	if json.Unmarshal(payload, &st) != nil || st.Predicate.LedgerIndex == nil {
		return 0, false
	}
	return *st.Predicate.LedgerIndex, true
}
