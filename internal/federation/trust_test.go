package federation_test

import (
	"context"
	"encoding/base64"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/federation"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/signing"
)

// registryOf serves foreign entries per repository and digest, as a
// registry where anyone with write access arranges the attestations.
type registryOf struct {
	mu    sync.Mutex
	at    map[string][]ledger.Entry // repository@digest
	reads []string
}

func (r *registryOf) ForeignEntries(_ context.Context, repository, d string, _ []*signing.Verifier) ([]ledger.Entry, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reads = append(r.reads, repository+"@"+d)
	return r.at[repository+"@"+d], nil
}

func (r *registryOf) set(repository, d string, es ...ledger.Entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.at == nil {
		r.at = map[string][]ledger.Entry{}
	}
	r.at[repository+"@"+d] = es
}

var t1 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// attested is a foreign entry of repo signed at t with a DSSE-shaped
// envelope over payload.
func attested(kind ledger.Kind, d, stage, payload string, t time.Time) ledger.Entry {
	return ledger.Entry{Kind: kind, Repository: repo, Digest: d, Stage: stage, Subject: "cluster-a", Time: t,
		Envelope: []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte(payload)) + `","signatures":[{"sig":"AA=="}]}`)}
}

func active(t *testing.T, l *ledger.Ledger, d, stage string) bool {
	t.Helper()
	st, _, err := l.State(d, stage)
	if err != nil {
		t.Fatal(err)
	}
	return st.Active()
}

// TestOlderPromotionNeverUndoesARevocation: someone with write access to
// the registry shows this cluster only the revocation, then restores the
// whole set; the older promotion must not be imported after it. The same
// holds after this cluster's own revocation of every stage.
func TestOlderPromotionNeverUndoesARevocation(t *testing.T) {
	ctx := context.Background()
	promo := attested(ledger.KindPromotion, digest(1), "prod", "promotion of 1", t1)
	revoke := attested(ledger.KindRevocation, digest(1), "prod", "revocation of 1", t1.Add(time.Hour))

	t.Run("revocation shown first", func(t *testing.T) {
		l, _ := ledgertest.New(t)
		reg := &registryOf{}
		reg.set(repo, digest(1), revoke)
		src := federation.New(l, reg, nil, federation.WithRefresh(time.Nanosecond))
		if _, err := src.Lookup(ctx, repo, digest(1)); err != nil {
			t.Fatal(err)
		}
		reg.set(repo, digest(1), promo, revoke)
		if _, err := src.Lookup(ctx, repo, digest(1)); err != nil {
			t.Fatal(err)
		}
		if active(t, l, digest(1), "prod") {
			t.Fatal("the older promotion undid the revocation")
		}
		// A promotion signed after the revocation is news, and counts.
		again := attested(ledger.KindPromotion, digest(1), "prod", "promotion of 1 again", t1.Add(2*time.Hour))
		reg.set(repo, digest(1), promo, revoke, again)
		if _, err := src.Lookup(ctx, repo, digest(1)); err != nil {
			t.Fatal(err)
		}
		if !active(t, l, digest(1), "prod") {
			t.Fatal("a promotion signed after the revocation was not imported")
		}
	})
	t.Run("after this cluster revoked every stage", func(t *testing.T) {
		l, _ := ledgertest.New(t)
		if _, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			return &ledger.Entry{Index: index, Kind: ledger.KindRevocation, Repository: repo, Digest: digest(1), Stage: ledger.AllStages,
				Subject: "security", Reason: "CVE", Time: t1.Add(30 * time.Minute)}, nil
		}); err != nil {
			t.Fatal(err)
		}
		reg := &registryOf{}
		reg.set(repo, digest(1), promo)
		src := federation.New(l, reg, nil)
		if _, err := src.Lookup(ctx, repo, digest(1)); err != nil {
			t.Fatal(err)
		}
		if active(t, l, digest(1), "prod") {
			t.Fatal("a promotion signed before this cluster's own revocation was imported over it")
		}
	})
}

// TestStatementRepositoryCounts: a copy of the image under another
// repository, with only the promotion attached, does not hide the
// revocation attached where the statement says the image lives.
func TestStatementRepositoryCounts(t *testing.T) {
	l, _ := ledgertest.New(t)
	reg := &registryOf{}
	promo := attested(ledger.KindPromotion, digest(2), "prod", "promotion of 2", t1)
	reg.set("attacker.example/mirror", digest(2), promo)
	reg.set(repo, digest(2), promo, attested(ledger.KindRevocation, digest(2), "prod", "revocation of 2", t1.Add(time.Hour)))
	src := federation.New(l, reg, nil)
	if _, err := src.Lookup(context.Background(), "attacker.example/mirror", digest(2)); err != nil {
		t.Fatal(err)
	}
	if active(t, l, digest(2), "prod") {
		t.Fatalf("the mirror's promotions-only attestations hid the revocation (reads %v)", reg.reads)
	}
}

// TestImportIsIdempotentOnTheStatement: a re-serialised copy of the same
// signed statement is not imported again at every refresh.
func TestImportIsIdempotentOnTheStatement(t *testing.T) {
	l, _ := ledgertest.New(t)
	reg := &registryOf{}
	e := attested(ledger.KindPromotion, digest(3), "prod", "promotion of 3", t1)
	reg.set(repo, digest(3), e)
	src := federation.New(l, reg, nil, federation.WithRefresh(time.Nanosecond))
	ctx := context.Background()
	if _, err := src.Lookup(ctx, repo, digest(3)); err != nil {
		t.Fatal(err)
	}
	for i, env := range []string{
		// Other key order and spacing, another signature: the same statement.
		`{"signatures":[{"sig":"AA=="}], "payload":"` + base64.StdEncoding.EncodeToString([]byte("promotion of 3")) + `","payloadType":"application/vnd.in-toto+json"}`,
		`{"payloadType":"application/vnd.in-toto+json","payload":"` + base64.StdEncoding.EncodeToString([]byte("promotion of 3")) + `","signatures":[{"sig":"AA=="},{"sig":"AQ=="}]}`,
	} {
		again := e
		again.Envelope = []byte(env)
		reg.set(repo, digest(3), again)
		if _, err := src.Lookup(ctx, repo, digest(3)); err != nil {
			t.Fatal(err)
		}
		if n, _ := l.Size(); n != 1 {
			t.Fatalf("copy %d: ledger has %d entries, want 1", i, n)
		}
	}
}

// TestMissCacheIsPerRepository: a review naming attacker/empty@D must not
// make this cluster refuse team/app@D for the whole refresh period.
func TestMissCacheIsPerRepository(t *testing.T) {
	l, _ := ledgertest.New(t)
	reg := &registryOf{}
	reg.set(repo, digest(4), attested(ledger.KindPromotion, digest(4), "prod", "promotion of 4", t1))
	src := federation.New(l, reg, nil, federation.WithRefresh(time.Hour))
	ctx := context.Background()
	if learned, err := src.Lookup(ctx, "attacker.example/empty", digest(4)); err != nil || learned {
		t.Fatalf("attacker's lookup: %v %v", learned, err)
	}
	if learned, err := src.Lookup(ctx, repo, digest(4)); err != nil || !learned {
		t.Fatalf("the real repository after the attacker's miss: learned %v, %v", learned, err)
	}
}

// TestCloseStopsRefreshes: Close waits for the background refreshes, and
// none starts after it.
func TestCloseStopsRefreshes(t *testing.T) {
	l, _ := ledgertest.New(t)
	reg := &registryOf{}
	reg.set(repo, digest(5), attested(ledger.KindPromotion, digest(5), "prod", "promotion of 5", t1))
	src := federation.New(l, reg, nil, federation.WithRefresh(time.Nanosecond))
	if learned, err := src.Lookup(context.Background(), repo, digest(5)); err != nil || !learned {
		t.Fatalf("Lookup: %v %v", learned, err)
	}
	src.Close()
	reg.mu.Lock()
	before := len(reg.reads)
	reg.mu.Unlock()
	// A stale digest learned from the registry: Seen would refresh it.
	src.Seen(repo, digest(5))
	src.Close() // idempotent; waits for any refresh that did start
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if len(reg.reads) != before {
		t.Fatalf("a refresh ran after Close: %v", reg.reads[before:])
	}
}
