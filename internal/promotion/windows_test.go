package promotion_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/windows"
)

// clock is a movable clock for tests: no test sleeps across a window.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time        { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Set(t time.Time)       { c.mu.Lock(); defer c.mu.Unlock(); c.now = t }
func at(s string) time.Time            { t, _ := time.Parse(time.RFC3339, s); return t }
func (c *clock) opt() promotion.Option { return promotion.WithClock(c.Now) }

var sre = policy.Identity{Subject: "oncall", Groups: []string{"sre-oncall"}}

// weekendFreeze freezes prod from Friday 16:00 to Monday 08:00 in Berlin;
// sre-oncall may promote anyway.
func weekendFreeze(t *testing.T) promotion.Option {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	from, _ := windows.ParseWeekTime("Fri 16:00")
	to, _ := windows.ParseWeekTime("Mon 08:00")
	return promotion.WithWindows(map[string]promotion.WindowRule{"prod": {
		Schedule:       windows.Schedule{{Deny: true, Name: "weekend freeze", Weekly: true, From: from, To: to, Loc: loc}},
		OverrideGroups: []string{"sre-oncall"},
	}})
}

// TestPromoteDuringFreeze: inside the freeze a promotion to prod is
// refused with when it opens again, before anything is resolved, asked or
// written; an emergency promotion from the override groups passes and its
// attestation says so (from anyone else it is a request: freeze_test.go); revocations are not blocked; at the opening moment
// a plain promotion passes.
func TestPromoteDuringFreeze(t *testing.T) {
	c := &clock{now: at("2026-03-28T12:00:00Z")} // Saturday, before the DST change
	e := newEnv(t, nil, weekendFreeze(t), c.opt())
	ctx := context.Background()
	e.promote(t, refApp, "dev") // other stages have no windows

	asked, size := e.policy.asked(), e.size(t)
	refusals := map[string]struct {
		req  promotion.Request
		want func(error) bool
	}{
		"plain promotion": {promotion.Request{Image: refApp, Stage: "prod", Requester: ci}, func(err error) bool {
			ce, ok := errors.AsType[*promotion.ClosedError](err)
			return ok && ce.Stage == "prod" && ce.Window == "weekend freeze" && ce.NextOpen.Equal(at("2026-03-30T06:00:00Z"))
		}},
		"override without a reason": {promotion.Request{Image: refApp, Stage: "prod", Requester: sre, FreezeOverride: true}, func(err error) bool {
			return errors.Is(err, promotion.ErrInvalid)
		}},
		"unresolvable image, still refused as closed": {promotion.Request{Image: repoApp + ":missing", Stage: "prod", Requester: ci}, func(err error) bool {
			_, ok := errors.AsType[*promotion.ClosedError](err)
			return ok
		}},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			_, err := e.svc.Promote(ctx, tc.req)
			if !tc.want(err) {
				t.Fatalf("err = %v", err)
			}
			if e.size(t) != size || e.policy.asked() != asked {
				t.Errorf("ledger size %d → %d, policy asked %d → %d: a refusal must write and ask nothing", size, e.size(t), asked, e.policy.asked())
			}
		})
	}

	res, err := e.svc.Promote(ctx, promotion.Request{Image: refApp, Stage: "prod", Requester: sre, FreezeOverride: true, Reason: "INC-7: checkout down"})
	if err != nil || !res.Created {
		t.Fatalf("emergency promotion: %+v, %v", res, err)
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if pred.FreezeOverride == nil || pred.FreezeOverride.Window != "weekend freeze" || !pred.FreezeOverride.NextOpen.Equal(at("2026-03-30T06:00:00Z")) ||
		pred.FreezeOverride.ApprovedBy != "oncall" || pred.Reason != "INC-7: checkout down" || !res.Receipt.Entry.FreezeOverride {
		t.Errorf("predicate freezeOverride = %+v, reason %q", pred.FreezeOverride, pred.Reason)
	}

	if _, err := e.svc.Revoke(ctx, promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "CVE-1", Requester: ci}); err != nil {
		t.Fatalf("revocation during the freeze: %v", err)
	}

	c.Set(at("2026-03-30T06:00:00Z")) // Monday 08:00 CEST: open
	res, err = e.svc.Promote(ctx, promotion.Request{Image: refIndex, Stage: "prod", Requester: ci})
	if err != nil || !res.Created {
		t.Fatalf("promotion at the opening: %+v, %v", res, err)
	}
	var plain signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &plain)
	if plain.FreezeOverride != nil {
		t.Errorf("an ordinary promotion records a freeze override: %+v", plain.FreezeOverride)
	}
}

// TestApprovalsDuringFreeze: a request may be opened and approved while
// prod is frozen; the approval that makes the quorum is recorded too, and
// the request waits for the window, saying until when; approving again
// writes nothing; once the stage is open, approving again completes it.
// (The Completer does that by itself: completer_test.go.)
func TestApprovalsDuringFreeze(t *testing.T) {
	c := &clock{now: at("2026-10-23T15:00:00Z")} // Friday 17:00 CEST, frozen
	e := newEnv(t, nil, weekendFreeze(t), prodApprovals, c.opt())
	byDigest(e)
	ctx := context.Background()
	res, err := e.svc.Promote(ctx, promotion.Request{Image: refApp, Stage: "prod", Requester: ci})
	if err != nil || res.Request == nil {
		t.Fatalf("request during the freeze: %+v, %v", res, err)
	}
	id := res.Request.ID
	alice := policy.Identity{Subject: "alice", Groups: []string{"security"}}
	bob := policy.Identity{Subject: "bob", Groups: []string{"security"}}
	if _, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: alice}); err != nil {
		t.Fatalf("first approval: %v", err)
	}
	size := e.size(t)
	res, err = e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: bob})
	// Across the autumn DST change: Monday 08:00 CET is 07:00 UTC.
	if err != nil || !res.Created || res.Request == nil || res.Request.State != promotion.RequestPending ||
		res.Request.Waits != "waits for the window: stage prod opens at 2026-10-26T07:00:00Z" || len(res.Request.Approvals) != 2 {
		t.Fatalf("completing approval during the freeze: %+v, %v", res.Request, err)
	}
	if e.size(t) != size+1 {
		t.Errorf("ledger size %d → %d: want the approval, and no promotion", size, e.size(t))
	}
	again, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: bob})
	if err != nil || again.Created || again.Request == nil || again.Request.Waits == "" || e.size(t) != size+1 {
		t.Fatalf("approving again during the freeze: %+v, %v; size %d", again, err, e.size(t))
	}
	c.Set(at("2026-10-26T07:00:00Z"))
	res, err = e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: bob})
	if err != nil || !res.Created || res.Request == nil || res.Request.State != promotion.RequestApproved {
		t.Fatalf("approving again once open: %+v, %v", res, err)
	}
}
