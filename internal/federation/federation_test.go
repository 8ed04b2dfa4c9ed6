package federation_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/federation"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/signing"
)

const repo = "registry.example/team/app"

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

// fetcher serves canned foreign entries and counts calls.
type fetcher struct {
	mu      sync.Mutex
	entries map[string][]ledger.Entry
	err     error
	calls   atomic.Int32
}

func (f *fetcher) ForeignEntries(_ context.Context, _, d string, _ []*signing.Verifier) ([]ledger.Entry, error) {
	f.calls.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	return f.entries[d], nil
}

func (f *fetcher) set(d string, es ...ledger.Entry) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entries[d] = es
}

func foreign(kind ledger.Kind, d, stage, env string) ledger.Entry {
	return ledger.Entry{Kind: kind, Repository: repo, Digest: d, Stage: stage, Subject: "cluster-a",
		Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Envelope: []byte(`{"payload":"` + env + `"}`)}
}

func TestLookupImportsOnceAndRefreshes(t *testing.T) {
	l, _ := ledgertest.New(t)
	f := &fetcher{entries: map[string][]ledger.Entry{}}
	f.set(digest(1), foreign(ledger.KindPromotion, digest(1), "prod", "p1"))
	src := federation.New(l, f, nil, federation.WithRefresh(time.Hour))
	ctx := context.Background()

	learned, err := src.Lookup(ctx, repo, digest(1))
	if err != nil || !learned {
		t.Fatalf("Lookup = %v, %v; want an import", learned, err)
	}
	st, ok, _ := l.State(digest(1), "prod")
	if !ok || !st.Active() {
		t.Fatalf("imported promotion not active: %+v", st)
	}
	hist, _ := l.History(digest(1))
	if len(hist) != 1 || !hist[0].Foreign {
		t.Fatalf("history after import: %+v", hist)
	}

	// A digest the registry knows nothing about is asked once, then not
	// again until the refresh interval.
	for range 3 {
		if learned, err := src.Lookup(ctx, repo, digest(2)); err != nil || learned {
			t.Fatalf("unknown digest: %v %v", learned, err)
		}
	}
	if n := f.calls.Load(); n != 2 {
		t.Fatalf("registry asked %d times, want 2", n)
	}

	// An unreachable registry is an error that says so.
	f.mu.Lock()
	f.err = errors.New("connection refused")
	f.mu.Unlock()
	if _, err := src.Lookup(ctx, repo, digest(3)); err == nil || !strings.Contains(err.Error(), "could not be reached") {
		t.Fatalf("registry down: %v", err)
	}
}

func TestSeenRefreshesForeignDigestsAfterRestart(t *testing.T) {
	l, _ := ledgertest.New(t)
	f := &fetcher{entries: map[string][]ledger.Entry{}}
	f.set(digest(1), foreign(ledger.KindPromotion, digest(1), "prod", "p1"))
	first := federation.New(l, f, nil)
	if learned, err := first.Lookup(context.Background(), repo, digest(1)); err != nil || !learned {
		t.Fatalf("Lookup: %v %v", learned, err)
	}
	// A revocation appears in the registry; a new process (no memory of
	// what it imported) sees the digest and must pick it up.
	f.set(digest(1), foreign(ledger.KindPromotion, digest(1), "prod", "p1"), foreign(ledger.KindRevocation, digest(1), "*", "r1"))
	restarted := federation.New(l, f, nil, federation.WithRefresh(time.Millisecond))
	deadline := time.Now().Add(10 * time.Second)
	for {
		restarted.Seen(repo, digest(1))
		if st, _, _ := l.State(digest(1), "prod"); st.Revoked {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the revocation never arrived")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The promotion was not imported twice.
	hist, _ := l.History(digest(1))
	if len(hist) != 2 {
		t.Fatalf("history has %d entries, want 2", len(hist))
	}
}
