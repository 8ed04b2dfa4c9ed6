package federation_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/federation"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
)

const listRef = "reg.example/cluster-a/revocations:latest"

// cosignPair generates a cosign key pair in a temporary directory.
func cosignPair(t *testing.T) (*signing.Signer, *signing.Verifier) {
	t.Helper()
	dir := t.TempDir()
	if err := signing.GenerateKeys(dir, nil, "stagegate.test/log"); err != nil {
		t.Fatal(err)
	}
	s, err := signing.LoadSigner(filepath.Join(dir, signing.CosignKeyFile), nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.Verifier()
	if err != nil {
		t.Fatal(err)
	}
	return s, v
}

// source signs as cluster A would: entries with their ledger index, and
// revocation lists.
type source struct {
	t      *testing.T
	signer *signing.Signer
}

func (s source) entry(kind ledger.Kind, d, stage string, at time.Time, index uint64) ledger.Entry {
	s.t.Helper()
	var st signing.Statement
	var err error
	req := signing.Requester{Subject: "cluster-a"}
	if kind == ledger.KindPromotion {
		st, err = signing.NewStatement(repo, d, signing.PromotionPredicateType, signing.PromotionPredicate{
			Stage: stage, Repository: repo, Requester: req, Time: at, LedgerIndex: index})
	} else {
		st, err = signing.NewStatement(repo, d, signing.RevocationPredicateType, signing.RevocationPredicate{
			Stage: stage, Repository: repo, Requester: req, Reason: "CVE", Time: at, LedgerIndex: index})
	}
	if err != nil {
		s.t.Fatal(err)
	}
	env, err := s.signer.Sign(st)
	if err != nil {
		s.t.Fatal(err)
	}
	return ledger.Entry{Kind: kind, Repository: repo, Digest: d, Stage: stage, Subject: "cluster-a", Time: at, Foreign: true, Envelope: env}
}

// list signs a revocation list issued at the given time.
func (s source) list(issued time.Time, revocations ...ledger.Entry) []byte {
	s.t.Helper()
	pred := signing.RevocationListPredicate{Issued: issued}
	for _, r := range revocations {
		pred.Revocations = append(pred.Revocations, r.Envelope)
	}
	st, err := signing.NewStatement("reg.example/cluster-a/revocations", "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
		signing.RevocationListPredicateType, pred)
	if err != nil {
		s.t.Fatal(err)
	}
	env, err := s.signer.Sign(st)
	if err != nil {
		s.t.Fatal(err)
	}
	return env
}

// lists serves one envelope per reference, as a registry anyone with
// write access can change.
type lists struct {
	mu  sync.Mutex
	env map[string][]byte
	err error
}

func (l *lists) GetEnvelope(_ context.Context, ref string, limit int64) ([]byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return nil, l.err
	}
	if int64(len(l.env[ref])) > limit {
		return nil, errors.New("too large")
	}
	return l.env[ref], nil
}

func (l *lists) put(ref string, env []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.env == nil {
		l.env = map[string][]byte{}
	}
	l.env[ref] = env
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestFreshness(t *testing.T) {
	ctx := context.Background()
	signer, verifier := cosignPair(t)
	a := source{t, signer}
	stranger, _ := cosignPair(t)
	now := &clock{t1}
	l, _ := ledgertest.New(t)
	served := &lists{}
	src := federation.New(l, &registryOf{}, []*signing.Verifier{verifier}, federation.WithClock(now.now),
		federation.WithFreshness(served, []string{listRef}, time.Hour, []string{"prod"}))
	t.Cleanup(src.Close)

	stale := func(want string) {
		t.Helper()
		err := src.Fresh("prod")
		if want == "" {
			if err != nil {
				t.Fatalf("Fresh(prod): %v, want fresh", err)
			}
			return
		}
		if !errors.Is(err, federation.ErrStale) || !strings.Contains(err.Error(), want) {
			t.Fatalf("Fresh(prod): %v, want ErrStale saying %q", err, want)
		}
	}
	if err := src.Fresh("dev"); err != nil {
		t.Fatalf("Fresh(dev), a stage that does not require it: %v", err)
	}
	stale("has not been read yet")

	served.err = errors.New("connection refused")
	if err := src.RefreshLists(ctx); err == nil {
		t.Fatal("RefreshLists of an unreachable registry: no error")
	}
	stale("reading it failed: federation: revocation list " + listRef + ": connection refused")
	served.err = nil

	served.put(listRef, otherList(t, stranger, t1))
	if err := src.RefreshLists(ctx); !errors.Is(err, revlist.ErrInvalid) {
		t.Fatalf("RefreshLists of a list no trusted key signed: %v, want ErrInvalid", err)
	}
	stale("no trusted key verifies it")

	served.put(listRef, a.list(t1))
	if err := src.RefreshLists(ctx); err != nil {
		t.Fatal(err)
	}
	stale("")

	now.t = t1.Add(59 * time.Minute)
	stale("")
	now.t = t1.Add(61 * time.Minute)
	stale("the newest was signed 1h1m0s ago, at 2026-01-01T00:00:00Z")

	// An older list put back does not make the view fresher, nor rolls it
	// back.
	served.put(listRef, a.list(t1.Add(-time.Hour)))
	if err := src.RefreshLists(ctx); err != nil {
		t.Fatal(err)
	}
	stale("the newest was signed 1h1m0s ago")

	served.put(listRef, a.list(t1.Add(time.Hour)))
	if err := src.RefreshLists(ctx); err != nil {
		t.Fatal(err)
	}
	stale("")
}

// revlist_of signs an empty list with another key.
func otherList(t *testing.T, s *signing.Signer, issued time.Time) []byte {
	return source{t, s}.list(issued)
}

// TestListedRevocationIsImported: whoever can write to the registry
// removed the revocation from the image's attestations; the list still
// carries it, and it is imported whether the promotion was known before or
// is fetched after.
func TestListedRevocationIsImported(t *testing.T) {
	ctx := context.Background()
	signer, verifier := cosignPair(t)
	a := source{t, signer}
	promo := a.entry(ledger.KindPromotion, digest(1), "prod", t1, 1)
	revoke := a.entry(ledger.KindRevocation, digest(1), "prod", t1.Add(time.Minute), 2)

	for name, listFirst := range map[string]bool{"promotion known before": false, "list read first": true} {
		t.Run(name, func(t *testing.T) {
			l, _ := ledgertest.New(t)
			reg := &registryOf{}
			reg.set(repo, digest(1), promo) // the revocation was removed
			served := &lists{}
			served.put(listRef, a.list(t1.Add(2*time.Minute), revoke))
			now := &clock{t1.Add(3 * time.Minute)}
			src := federation.New(l, reg, []*signing.Verifier{verifier}, federation.WithClock(now.now),
				federation.WithFreshness(served, []string{listRef}, time.Hour, []string{"prod"}))
			t.Cleanup(src.Close)
			steps := []func() error{
				func() error { _, err := src.Lookup(ctx, repo, digest(1)); return err },
				func() error { return src.RefreshLists(ctx) },
			}
			if listFirst {
				steps[0], steps[1] = steps[1], steps[0]
			}
			for _, step := range steps {
				if err := step(); err != nil {
					t.Fatal(err)
				}
			}
			if active(t, l, digest(1), "prod") {
				t.Fatal("the promotion counts although the list says it was revoked")
			}
			// Reading the list again imports nothing twice.
			size, _ := l.Size()
			if err := src.RefreshLists(ctx); err != nil {
				t.Fatal(err)
			}
			if again, _ := l.Size(); again != size {
				t.Fatalf("a second read of the list grew the ledger from %d to %d entries", size, again)
			}
		})
	}
}

// TestSourceIndexOrdersOneInstant: a promotion and a revocation signed in
// the same instant are folded in their source ledger's order.
func TestSourceIndexOrdersOneInstant(t *testing.T) {
	ctx := context.Background()
	signer, verifier := cosignPair(t)
	a := source{t, signer}
	tests := map[string]struct {
		promoIndex, revokeIndex uint64
		wantActive              bool
	}{
		"promoted again after the revocation": {promoIndex: 7, revokeIndex: 5, wantActive: true},
		"revoked after the promotion":         {promoIndex: 5, revokeIndex: 7, wantActive: false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, _ := ledgertest.New(t)
			reg := &registryOf{}
			// The registry lists them in the order least favourable to
			// the answer wanted.
			p := a.entry(ledger.KindPromotion, digest(1), "prod", t1, tc.promoIndex)
			r := a.entry(ledger.KindRevocation, digest(1), "prod", t1, tc.revokeIndex)
			if tc.wantActive {
				reg.set(repo, digest(1), p, r)
			} else {
				reg.set(repo, digest(1), r, p)
			}
			src := federation.New(l, reg, []*signing.Verifier{verifier})
			t.Cleanup(src.Close)
			if _, err := src.Lookup(ctx, repo, digest(1)); err != nil {
				t.Fatal(err)
			}
			if got := active(t, l, digest(1), "prod"); got != tc.wantActive {
				t.Fatalf("active = %v, want %v", got, tc.wantActive)
			}
		})
	}
}
