package federation_test

import (
	"context"
	"errors"
	"maps"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/federation"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/signing"
)

// TestLookupImportsPlatformRevocations: the registry attests a platform's
// revocation on the platform, and a lookup of the index must bring it in,
// whichever came first where it was made.
func TestLookupImportsPlatformRevocations(t *testing.T) {
	index, p1, p2 := digest(10), digest(11), digest(12)
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	promo := foreign(ledger.KindPromotion, index, "prod", "promo")
	promo.Platforms = []string{p1, p2}
	promo.Time = at
	tests := map[string]struct {
		revokedAt time.Duration // after the promotion; negative: before
		failP2    bool
		wantErr   bool
	}{
		"revoked after the index was promoted":  {revokedAt: time.Hour},
		"revoked before the index was promoted": {revokedAt: -time.Hour},
		"a platform's attestations unreadable":  {revokedAt: time.Hour, failP2: true, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, _ := ledgertest.New(t)
			rev := foreign(ledger.KindRevocation, p1, "prod", "rev")
			rev.Reason, rev.Time = "CVE", at.Add(tc.revokedAt)
			f := &failing{fetcher: fetcher{entries: map[string][]ledger.Entry{}}}
			f.set(index, promo)
			f.set(p1, rev)
			if tc.failP2 {
				f.fail = p2
			}
			src := federation.New(l, f, nil)
			learned, err := src.Lookup(context.Background(), repo, index)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), p2) {
					t.Fatalf("Lookup = %v, %v; want an error naming the platform", learned, err)
				}
				return
			}
			if err != nil || !learned {
				t.Fatalf("Lookup = %v, %v", learned, err)
			}
			st, _, _ := l.State(index, "prod")
			if !st.Promoted || !st.Revoked || st.RevokedDigest != p1 || st.RevokeReason != "CVE" {
				t.Fatalf("index after its platform's revocation came in: %+v", st)
			}
			if st, _, _ := l.State(p2, "prod"); !st.Active() {
				t.Fatalf("other platform: %+v", st)
			}
			// A second look imports nothing twice.
			if _, err := federation.New(l, f, nil).Lookup(context.Background(), repo, index); err != nil {
				t.Fatal(err)
			}
			if n, _ := l.Size(); n != 2 {
				t.Fatalf("ledger has %d entries, want 2", n)
			}
		})
	}
}

// failing is a fetcher that cannot read one digest.
type failing struct {
	fetcher
	fail string
}

func (f *failing) ForeignEntries(ctx context.Context, r, d string, keys []*signing.Verifier) ([]ledger.Entry, error) {
	if d == f.fail {
		return nil, errors.New("connection reset")
	}
	return f.fetcher.ForeignEntries(ctx, r, d, keys)
}

// TestImportKeepsPlatformLabels: a foreign promotion entry built without
// platform labels (as internal/oci builds it from the predicate fields it
// knows) gets them from its signed predicate, so that each platform is
// recorded with its own labels.
func TestImportKeepsPlatformLabels(t *testing.T) {
	dir := t.TempDir()
	if err := signing.GenerateKeys(dir, nil, "stagegate.test/log"); err != nil {
		t.Fatal(err)
	}
	signer, err := signing.LoadSigner(filepath.Join(dir, signing.CosignKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := signer.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	index, p1, p2 := digest(20), digest(21), digest(22)
	own := map[string]map[string]string{
		p1:        {"team": "a", "arch": "amd64"},
		p2:        {"team": "a", "arch": "arm64"},
		digest(9): {"not": "a platform"},
	}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	st, err := signing.NewStatement(repo, index, signing.PromotionPredicateType, signing.PromotionPredicate{
		Stage: "prod", Repository: repo, Platforms: []string{p1, p2}, Time: at,
		Requester: signing.Requester{Subject: "cluster-a"}, Labels: map[string]string{"team": "a"}, PlatformLabels: own,
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := signer.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	e := ledger.Entry{Kind: ledger.KindPromotion, Repository: repo, Digest: index, Platforms: []string{p1, p2},
		Stage: "prod", Subject: "cluster-a", Time: at, Labels: map[string]string{"team": "a"}, Envelope: env}

	l, _ := ledgertest.New(t)
	f := &fetcher{entries: map[string][]ledger.Entry{}}
	f.set(index, e)
	if learned, err := federation.New(l, f, []*signing.Verifier{verifier}).Lookup(context.Background(), repo, index); err != nil || !learned {
		t.Fatalf("Lookup = %v, %v", learned, err)
	}
	for d, want := range map[string]map[string]string{index: {"team": "a"}, p1: own[p1], p2: own[p2]} {
		st, _, err := l.State(d, "prod")
		if err != nil || !st.Active() || !maps.Equal(st.Labels, want) {
			t.Errorf("State(%s) = %+v, %v; want labels %v", d, st, err, want)
		}
	}
	// The imported entry verifies as the attestation says.
	hist, _ := l.History(index)
	if len(hist) != 1 {
		t.Fatalf("history %+v", hist)
	}
	if err := signing.CheckEntry(verifier)(hist[0]); err != nil {
		t.Fatalf("CheckEntry: %v", err)
	}
}
