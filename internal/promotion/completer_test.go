package promotion_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

var (
	alice = policy.Identity{Subject: "alice", Groups: []string{"security"}}
	bob   = policy.Identity{Subject: "bob", Groups: []string{"security"}}
)

// waitingEnv is prod frozen for the weekend, two approvals from security
// that expire after 48h, and a clock on Friday 23 October 2026 17:00
// CEST, inside the freeze; the weekend crosses the autumn DST change, so
// the freeze ends Monday 08:00 CET, 07:00 UTC.
func waitingEnv(t *testing.T) (*env, *clock) {
	t.Helper()
	c := &clock{now: at("2026-10-23T15:00:00Z")}
	e := newEnv(t, nil, weekendFreeze(t), c.opt(), promotion.WithApprovals(map[string]promotion.ApprovalRule{
		"prod": {Required: 2, Groups: []string{"security"}, ExcludeRequester: true, Expires: 48 * time.Hour},
	}))
	return e, c
}

// request opens a request for image i and has it approved by the given
// approvers, all during the freeze.
func (e *env) request(t *testing.T, i int, by ...policy.Identity) uint64 {
	t.Helper()
	ref := fmt.Sprintf("%s:w-%d", repoApp, i)
	img := registry.Resolved{Reference: ref, Repository: repoApp, Tag: fmt.Sprintf("w-%d", i), Digest: digestOf(ref)}
	e.resolver.images[ref] = img
	img.Reference, img.Tag = repoApp+"@"+img.Digest, ""
	e.resolver.images[img.Reference] = img
	ctx := context.Background()
	res, err := e.svc.Promote(ctx, promotion.Request{Image: ref, Stage: "prod", Requester: ci})
	if err != nil || res.Request == nil {
		t.Fatalf("request %d: %+v, %v", i, res, err)
	}
	for _, who := range by {
		if _, err := e.svc.Approve(ctx, promotion.Answer{ID: res.Request.ID, Reason: "ok", By: who}); err != nil {
			t.Fatalf("approval of request %d by %s: %v", i, who.Subject, err)
		}
	}
	return res.Request.ID
}

func (e *env) requestState(t *testing.T, id uint64) promotion.RequestView {
	t.Helper()
	v, err := e.svc.Request(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCompleterAtOpening: requests that collected their quorum during the
// freeze wait, and the Completer completes them at the opening, with the
// real ledger and an injected clock: not one that expired meanwhile, nor
// one short of its quorum, nor one the policy refuses then (retried at
// the next tick, and completed once the policy passes). The promotion
// lists the approvals collected during the freeze.
func TestCompleterAtOpening(t *testing.T) {
	e, c := waitingEnv(t)
	ctx := context.Background()
	expiring := e.request(t, 0, alice, bob) // expires Sunday 15:00 UTC
	c.Set(at("2026-10-24T12:00:00Z"))       // Saturday
	ready := e.request(t, 1, alice, bob)
	short := e.request(t, 2, alice)
	if v := e.requestState(t, ready); v.State != promotion.RequestPending || v.Waits == "" {
		t.Fatalf("request with its quorum during the freeze: %+v", v)
	}

	comp := e.svc.NewCompleter()
	size := e.size(t)
	if next := comp.Tick(ctx); !next.Equal(at("2026-10-26T07:00:00Z")) || e.size(t) != size {
		t.Fatalf("tick during the freeze: next %s, size %d → %d; want the opening and nothing written", next, size, e.size(t))
	}

	c.Set(at("2026-10-26T07:00:00Z")) // Monday 08:00 CET: open
	e.policy.set([]string{"soak not met"}, nil)
	comp.Tick(ctx)
	if v := e.requestState(t, ready); v.State != promotion.RequestPending || e.size(t) != size {
		t.Fatalf("refused by the policy at the opening: %+v, size %d → %d; want pending and nothing written", v, size, e.size(t))
	}
	e.policy.set(nil, nil)
	c.Set(at("2026-10-26T07:01:00Z"))
	comp.Tick(ctx)
	want := map[uint64]string{expiring: promotion.RequestExpired, ready: promotion.RequestApproved, short: promotion.RequestPending}
	for id, state := range want {
		if v := e.requestState(t, id); v.State != state {
			t.Errorf("request %d is %s, want %s", id, v.State, state)
		}
	}
	if e.size(t) != size+1 {
		t.Errorf("ledger size %d → %d, want one promotion", size, e.size(t))
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if pred.Request == nil || *pred.Request != ready || len(pred.Approvals) != 2 || pred.FreezeOverride != nil {
		t.Errorf("promotion predicate: request %v, approvals %+v, freezeOverride %+v", pred.Request, pred.Approvals, pred.FreezeOverride)
	}
	if in := e.policy.last(t); len(in.Approvals) != 2 {
		t.Errorf("the policy saw approvals %+v, want alice's and bob's", in.Approvals)
	}

	// Nothing left to retry: the next tick, still open, reads nothing new.
	size = e.size(t)
	comp.Tick(ctx)
	if e.size(t) != size {
		t.Errorf("a later tick wrote %d entries", e.size(t)-size)
	}
}

// TestCompleterLeaderOnly: a Completer that is not the leader completes
// nothing; once it leads, its first tick finds what waited.
func TestCompleterLeaderOnly(t *testing.T) {
	e, c := waitingEnv(t)
	ctx := context.Background()
	c.Set(at("2026-10-24T12:00:00Z")) // Saturday: valid until Monday noon
	id := e.request(t, 0, alice, bob)
	var leader atomic.Bool
	comp := e.svc.NewCompleter(promotion.WithLeader(leader.Load))
	c.Set(at("2026-10-26T07:00:00Z"))
	if next := comp.Tick(ctx); !next.IsZero() || e.requestState(t, id).State != promotion.RequestPending {
		t.Fatalf("a follower's tick: next %s, request %s", next, e.requestState(t, id).State)
	}
	leader.Store(true)
	comp.Tick(ctx)
	if v := e.requestState(t, id); v.State != promotion.RequestApproved {
		t.Fatalf("the leader's first tick: request %s, want approved", v.State)
	}
}

// TestCompleterRun: Run waits (on the injected timer, at most a minute)
// and ticks when it fires; it returns when its context ends. The test
// learns that a tick is over when Run asks for the next timer.
func TestCompleterRun(t *testing.T) {
	e, c := waitingEnv(t)
	c.Set(at("2026-10-24T12:00:00Z")) // Saturday: valid until Monday noon
	id := e.request(t, 0, alice, bob)
	waits, fire := make(chan time.Duration), make(chan time.Time)
	comp := e.svc.NewCompleter(promotion.WithTimer(func(d time.Duration) <-chan time.Time { waits <- d; return fire }))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { comp.Run(ctx); close(done) }()

	if d := <-waits; d != time.Minute {
		t.Errorf("wait during a 64h freeze = %s, want the one-minute cap", d)
	}
	c.Set(at("2026-10-26T06:59:30Z"))
	fire <- c.Now()
	if d := <-waits; d != 30*time.Second {
		t.Errorf("wait 30s before the opening = %s", d)
	}
	c.Set(at("2026-10-26T07:00:00Z"))
	fire <- c.Now()
	<-waits
	if v := e.requestState(t, id); v.State != promotion.RequestApproved {
		t.Errorf("after the tick at the opening: request %s, want approved", v.State)
	}
	cancel()
	<-done
}
