package revlist_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
)

// replica stands in for cluster.Node: whether it leads is the test's to
// flip, and its barrier runs what the test says.
type replica struct {
	leads   atomic.Bool
	barrier func(context.Context) error
}

func (r *replica) IsLeader() bool { return r.leads.Load() }
func (r *replica) Barrier(ctx context.Context) error {
	if r.barrier != nil {
		return r.barrier(ctx)
	}
	if !r.leads.Load() {
		return errors.New("not the leader")
	}
	return nil
}

// queue records every envelope pushed, in order.
type queue chan []byte

func (q queue) PutEnvelope(_ context.Context, _ string, envelope []byte, _ map[string]string) error {
	q <- envelope
	return nil
}

func revocationEnv(s string) json.RawMessage {
	return json.RawMessage(`{"payloadType":"application/vnd.in-toto+json","payload":"` + s + `","signatures":[]}`)
}

// TestOnlyTheLeaderPublishesAndANewOneAtOnce runs two replicas'
// publishers: the follower pushes nothing, and after the leadership
// moves the new leader publishes at once, before its interval or any new
// revocation, while the deposed one stops.
func TestOnlyTheLeaderPublishesAndANewOneAtOnce(t *testing.T) {
	signer, verifier := keys(t)
	l, logKey := ledgertest.New(t)
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(1), Stage: "prod", Reason: "CVE", Envelope: revocationEnv("cjE=")})
	at := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	clock := func() time.Time { return at }

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	type member struct {
		r       *replica
		changes chan struct{}
		pushed  queue
	}
	start := func(leads bool) member {
		m := member{r: &replica{}, changes: make(chan struct{}), pushed: make(queue, 16)}
		m.r.leads.Store(leads)
		// An hour's poll and the default interval: only a leadership
		// change can make these publish within the test.
		pub := revlist.NewPublisher(l, logKey, signer, m.pushed, ref, revlist.WithClock(clock),
			revlist.WithPoll(time.Hour), revlist.WithLeader(m.r, m.changes))
		wg.Go(func() { pub.Run(ctx) })
		return m
	}
	// settle returns once m's Run has handled everything sent before:
	// the changes channel is unbuffered and Run handles one at a time.
	settle := func(m member) { m.changes <- struct{}{}; m.changes <- struct{}{} }
	list := func(env []byte) signing.RevocationListPredicate {
		t.Helper()
		p, err := revlist.Verify(env, []*signing.Verifier{verifier})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}

	a, b := start(true), start(false)
	if got := list(<-a.pushed); len(got.Revocations) != 1 || got.TreeSize != 1 || !got.Issued.Equal(at) {
		t.Fatalf("leader's first list: %+v", got)
	}
	settle(b)
	if n := len(b.pushed); n != 0 {
		t.Fatalf("the follower pushed %d lists; only the leader publishes", n)
	}

	a.r.leads.Store(false)
	b.r.leads.Store(true)
	settle(a)
	b.changes <- struct{}{}
	if got := list(<-b.pushed); len(got.Revocations) != 1 || got.TreeSize != 1 {
		t.Fatalf("new leader's list: %+v", got)
	}
	settle(b)
	if n, m := len(a.pushed), len(b.pushed); n != 0 || m != 0 {
		t.Fatalf("after the hand-over the deposed leader pushed %d lists, the new one %d more; want 0 and 0", n, m)
	}
}

// TestPublishIsAsOfABarrier: a list says "every revocation up to
// Issued", so under WithLeader Issued is the moment the barrier began,
// the list holds what the barrier applied, and a replica whose barrier
// fails (a follower, a deposed leader) pushes nothing.
func TestPublishIsAsOfABarrier(t *testing.T) {
	signer, verifier := keys(t)
	before := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	tests := map[string]struct {
		// barrier runs as Raft's would: it may apply entries of the old
		// term to l, and it takes time (moves now).
		barrier  func(t *testing.T, l *ledger.Ledger, now *time.Time) error
		wantErr  string
		wantRevs int
	}{
		"applies the old term's revocation": {
			barrier: func(t *testing.T, l *ledger.Ledger, now *time.Time) error {
				appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(2), Stage: "prod", Reason: "CVE", Envelope: revocationEnv("cjI=")})
				*now = now.Add(3 * time.Second)
				return nil
			},
			wantRevs: 2,
		},
		"deposed leader": {
			barrier: func(*testing.T, *ledger.Ledger, *time.Time) error {
				return errors.New("leadership lost while committing log")
			},
			wantErr: "only the cluster leader publishes",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l, logKey := ledgertest.New(t)
			appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/app", Digest: digest(1), Stage: "prod", Reason: "CVE", Envelope: revocationEnv("cjE=")})
			now := before
			r := &replica{barrier: func(context.Context) error { return tc.barrier(t, l, &now) }}
			r.leads.Store(true)
			pushed := make(queue, 1)
			pub := revlist.NewPublisher(l, logKey, signer, pushed, ref, revlist.WithClock(func() time.Time { return now }), revlist.WithLeader(r, nil))
			_, err := pub.Publish(context.Background())
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Publish: %v, want an error saying %q", err, tc.wantErr)
				}
				if len(pushed) != 0 {
					t.Fatal("a replica whose barrier failed pushed a list")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := revlist.Verify(<-pushed, []*signing.Verifier{verifier})
			if err != nil {
				t.Fatal(err)
			}
			if !got.Issued.Equal(before) || len(got.Revocations) != tc.wantRevs || got.TreeSize != uint64(tc.wantRevs) {
				t.Fatalf("list issued %v with %d revocations at size %d; want issued %v (the barrier's start) with %d",
					got.Issued, len(got.Revocations), got.TreeSize, before, tc.wantRevs)
			}
		})
	}
}
