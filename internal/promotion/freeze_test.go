package promotion_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/windows"
)

var (
	sre2  = policy.Identity{Subject: "oncall-2", Groups: []string{"sre-oncall"}}
	carol = policy.Identity{Subject: "carol", Groups: []string{"security", "sre-oncall"}}
	nobod = policy.Identity{Subject: "stolen-token"}
)

// emergency is the pipeline's emergency promotion of refApp to prod.
func emergency(by policy.Identity) promotion.Request {
	return promotion.Request{Image: refApp, Stage: "prod", Requester: by, FreezeOverride: true, Reason: "INC-7: checkout down"}
}

// freezeRequest opens the pipeline's emergency request to prod and checks
// what the request records: marked in its entry and its predicate.
func freezeRequest(t *testing.T, e *env, needed int) uint64 {
	t.Helper()
	res, err := e.svc.Promote(context.Background(), emergency(ci))
	if err != nil || res.Request == nil || !res.Created {
		t.Fatalf("emergency request by the pipeline: %+v, %v", res, err)
	}
	v := res.Request
	if !v.FreezeOverride || v.FreezeApprovedBy != "" || v.Needed != needed || !slices.Equal(v.FreezeGroups, []string{"sre-oncall"}) ||
		v.State != promotion.RequestPending || v.Waits != "" {
		t.Fatalf("request view = %+v, want a pending freeze-override request needing %d", v, needed)
	}
	if rc := res.Receipt.Entry; rc.Kind != ledger.KindRequest || !rc.FreezeOverride {
		t.Errorf("request entry kind %s, freezeOverride %v", rc.Kind, rc.FreezeOverride)
	}
	var pred signing.RequestPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if pred.FreezeOverride == nil || pred.FreezeOverride.Window != "weekend freeze" || pred.FreezeOverride.NextOpen.IsZero() {
		t.Errorf("request predicate freezeOverride = %+v", pred.FreezeOverride)
	}
	return v.ID
}

// TestFreezeOverrideByApproval: during the freeze the pipeline's emergency
// promotion to prod (no approvals there) is a request; re-sending it
// returns it; it may not be approved by its requester, by a group outside
// freezeOverrideGroups or by a groupless token (each writes nothing and
// asks no policy); one approval from sre-oncall completes it although the
// stage is closed, and the promotion records the freeze and the approval.
func TestFreezeOverrideByApproval(t *testing.T) {
	c := &clock{now: at("2026-03-28T12:00:00Z")} // Saturday, frozen until Monday 06:00 UTC
	e := newEnv(t, nil, weekendFreeze(t), c.opt())
	byDigest(e)
	ctx := context.Background()
	id := freezeRequest(t, e, 1)
	if v := e.requestState(t, id); !v.Expires.Equal(at("2026-03-29T12:00:00Z")) {
		t.Errorf("expires %s, want a day later (before the opening)", v.Expires)
	}
	if prod := e.svc.Stages(ctx)[len(stages)-1]; prod.Name != "prod" || prod.Approvals || !slices.Equal(prod.Pending, []uint64{id}) {
		t.Errorf("prod's view: approvals %v, pending %v, want the emergency request %d pending", prod.Approvals, prod.Pending, id)
	}
	size := e.size(t)
	again, err := e.svc.Promote(ctx, emergency(ci))
	if err != nil || again.Created || again.Request == nil || again.Request.ID != id || e.size(t) != size {
		t.Fatalf("re-sent emergency request: %+v, %v", again, err)
	}

	asked := e.policy.asked()
	for name, by := range map[string]policy.Identity{"the requester": ci, "security, not in freezeOverrideGroups": alice, "a groupless token": nobod} {
		t.Run(name, func(t *testing.T) {
			_, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "lgtm", By: by})
			if _, ok := errors.AsType[*promotion.ForbiddenError](err); !ok {
				t.Fatalf("approval: %v, want a *ForbiddenError", err)
			}
			if e.size(t) != size || e.policy.asked() != asked {
				t.Errorf("size %d → %d, policy asked %d → %d: a refusal writes and asks nothing", size, e.size(t), asked, e.policy.asked())
			}
		})
	}

	res, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "INC-7 confirmed", By: sre})
	if err != nil || !res.Created || res.Request == nil || res.Request.State != promotion.RequestApproved || res.Request.FreezeApprovedBy != "oncall" {
		t.Fatalf("the freeze-override approval: %+v, %v", res.Request, err)
	}
	pe := res.Receipt.Entry
	if pe.Kind != ledger.KindPromotion || !pe.FreezeOverride || pe.Request == nil || *pe.Request != id || len(pe.Approvals) != 1 || pe.Approvals[0].Subject != "oncall" {
		t.Errorf("promotion entry %+v", pe)
	}
	if st := e.state(t, digestApp, "prod"); !st.Active() {
		t.Errorf("prod state %+v, want active", st)
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if fo := pred.FreezeOverride; fo == nil || fo.Window != "weekend freeze" || !fo.NextOpen.Equal(at("2026-03-30T06:00:00Z")) || fo.ApprovedBy != "oncall" ||
		len(pred.Approvals) != 1 || pred.Approvals[0].Subject != "oncall" || pred.Requester.Subject != "ci" {
		t.Errorf("promotion predicate: freezeOverride %+v, approvals %+v, requester %+v", pred.FreezeOverride, pred.Approvals, pred.Requester)
	}
	if in := e.policy.last(t); len(in.Approvals) != 1 || in.Approvals[0].Subject != "oncall" {
		t.Errorf("the policy saw approvals %+v", in.Approvals)
	}
	if _, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "me too", By: sre2}); !errors.Is(err, promotion.ErrNotPending) {
		t.Errorf("approving a completed request: %v, want ErrNotPending", err)
	}
}

// TestFreezeOverrideWindowOpen: a freeze-override request to a stage
// without approvals expires at the opening (a plain promotion passes
// then), and an emergency promotion asked while the stage is open is a
// plain one: promoted at once, nothing about a freeze recorded.
func TestFreezeOverrideWindowOpen(t *testing.T) {
	c := &clock{now: at("2026-03-29T22:00:00Z")} // Monday 00:00 CEST, frozen until 08:00
	e := newEnv(t, nil, weekendFreeze(t), c.opt())
	byDigest(e)
	ctx := context.Background()
	id := freezeRequest(t, e, 1)
	c.Set(at("2026-03-30T06:00:00Z"))
	if v := e.requestState(t, id); v.State != promotion.RequestExpired {
		t.Fatalf("at the opening the request is %s, want expired", v.State)
	}
	size := e.size(t)
	if _, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "late", By: sre}); !errors.Is(err, promotion.ErrNotPending) || e.size(t) != size {
		t.Fatalf("approving the expired request: %v, size %d → %d", err, size, e.size(t))
	}
	res, err := e.svc.Promote(ctx, emergency(ci))
	if err != nil || !res.Created || res.Request != nil || res.Receipt.Entry.Kind != ledger.KindPromotion || res.Receipt.Entry.FreezeOverride {
		t.Fatalf("emergency promotion once open: %+v, %v", res, err)
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if pred.FreezeOverride != nil {
		t.Errorf("a promotion while open records a freeze override: %+v", pred.FreezeOverride)
	}
}

// TestFreezeOverrideOpenWithApprovals: in a stage with approvals, the
// flag asked while the stage is open is a plain request, with nothing to
// do with a freeze; a freeze-override request may be rejected by a member
// of freezeOverrideGroups, which closes it.
func TestFreezeOverrideOpenWithApprovals(t *testing.T) {
	c := &clock{now: at("2026-10-21T10:00:00Z")} // Wednesday: open
	e := newEnv(t, nil, weekendFreeze(t), prodApprovals, c.opt())
	ctx := context.Background()
	res, err := e.svc.Promote(ctx, emergency(ci))
	if err != nil || res.Request == nil || res.Request.FreezeOverride || res.Receipt.Entry.FreezeOverride || res.Request.Needed != 2 {
		t.Fatalf("the flag while open: %+v, %v; want a plain request", res.Request, err)
	}
	var pred signing.RequestPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if pred.FreezeOverride != nil {
		t.Errorf("a plain request's predicate records a freeze: %+v", pred.FreezeOverride)
	}

	c.Set(at("2026-10-23T15:00:00Z")) // Friday 17:00 CEST: frozen
	ref := repoApp + ":multi"
	res, err = e.svc.Promote(ctx, promotion.Request{Image: ref, Stage: "prod", Requester: ci, FreezeOverride: true, Reason: "INC-8"})
	if err != nil || res.Request == nil || !res.Request.FreezeOverride {
		t.Fatalf("emergency request: %+v, %v", res.Request, err)
	}
	rej, err := e.svc.Reject(ctx, promotion.Answer{ID: res.Request.ID, Reason: "not an emergency", By: sre})
	if err != nil || rej.Request == nil || rej.Request.State != promotion.RequestRejected {
		t.Fatalf("rejection by sre-oncall: %+v, %v", rej.Request, err)
	}
}

// TestFreezeOverrideWithApprovals: in a stage that also has approvals
// (two from security, not the requester) an emergency request needs both
// rules: the quorum and one approval from sre-oncall. An approver in both
// groups counts for both; an sre-oncall approval once the override is
// approved is refused; a requester in sre-oncall approves the override
// by asking; once the stage opens, the quorum alone completes it.
func TestFreezeOverrideWithApprovals(t *testing.T) {
	tests := map[string]struct {
		requester policy.Identity
		needed    int
		approvers []policy.Identity
		// refused is approved last and must be refused, before the end.
		refused *policy.Identity
		// open moves the clock to the opening before the completer runs.
		open          bool
		freezeBy      string
		wantApprovals int
	}{
		"quorum, then the freeze approval":      {requester: ci, needed: 3, approvers: []policy.Identity{alice, bob, sre}, freezeBy: "oncall", wantApprovals: 3},
		"the freeze approval first":             {requester: ci, needed: 3, approvers: []policy.Identity{sre, alice, bob}, freezeBy: "oncall", wantApprovals: 3},
		"one approver in both groups":           {requester: ci, needed: 3, approvers: []policy.Identity{alice, carol}, freezeBy: "carol", wantApprovals: 2},
		"a second freeze approval":              {requester: ci, needed: 3, approvers: []policy.Identity{sre}, refused: &sre2},
		"quorum only, completed at the opening": {requester: ci, needed: 3, approvers: []policy.Identity{alice, bob}, open: true, wantApprovals: 2},
		"a requester in sre-oncall": {requester: policy.Identity{Subject: "oncall", Groups: []string{"sre-oncall", "pipeline"}}, needed: 2,
			approvers: []policy.Identity{alice, bob}, freezeBy: "oncall", wantApprovals: 2},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := &clock{now: at("2026-10-23T15:00:00Z")} // Friday 17:00 CEST, frozen
			e := newEnv(t, nil, weekendFreeze(t), prodApprovals, c.opt())
			byDigest(e)
			ctx := context.Background()
			res, err := e.svc.Promote(ctx, emergency(tc.requester))
			if err != nil || res.Request == nil || !res.Request.FreezeOverride || res.Request.Needed != tc.needed {
				t.Fatalf("emergency request: %+v, %v", res.Request, err)
			}
			id := res.Request.ID
			for i, by := range tc.approvers {
				res, err = e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: by})
				if err != nil {
					t.Fatalf("approval by %s: %v", by.Subject, err)
				}
				if last := i == len(tc.approvers)-1; !last && res.Request.State != promotion.RequestPending {
					t.Fatalf("after %s's approval the request is %s", by.Subject, res.Request.State)
				}
			}
			if tc.refused != nil {
				size := e.size(t)
				if _, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: *tc.refused}); !errors.As(err, new(*promotion.ForbiddenError)) || e.size(t) != size {
					t.Fatalf("approval by %s: %v, size %d → %d; want a *ForbiddenError and nothing written", tc.refused.Subject, err, size, e.size(t))
				}
				if v := e.requestState(t, id); v.State != promotion.RequestPending || v.Needed != 2 || v.FreezeApprovedBy != "oncall" {
					t.Errorf("request %+v, want pending, needing the quorum", v)
				}
				return
			}
			if tc.open {
				if v := e.requestState(t, id); v.State != promotion.RequestPending || v.Needed != 1 || v.Waits != "" {
					t.Fatalf("with the quorum only, during the freeze: %+v", v)
				}
				c.Set(at("2026-10-26T07:00:00Z"))
				e.svc.NewCompleter().Tick(ctx)
			}
			v := e.requestState(t, id)
			if v.State != promotion.RequestApproved || v.Promotion == nil {
				t.Fatalf("request %+v, want approved", v)
			}
			var pred signing.PromotionPredicate
			decodePredicate(t, e.signer.last(t), &pred)
			if len(pred.Approvals) != tc.wantApprovals {
				t.Errorf("promotion lists %d approvals, want %d", len(pred.Approvals), tc.wantApprovals)
			}
			switch {
			case tc.freezeBy == "" && pred.FreezeOverride != nil:
				t.Errorf("completed at the opening, yet records a freeze override: %+v", pred.FreezeOverride)
			case tc.freezeBy != "" && (pred.FreezeOverride == nil || pred.FreezeOverride.ApprovedBy != tc.freezeBy ||
				!pred.FreezeOverride.NextOpen.Equal(at("2026-10-26T07:00:00Z"))):
				t.Errorf("freezeOverride %+v, want approved by %s", pred.FreezeOverride, tc.freezeBy)
			}
		})
	}
}

// TestFreezeOverrideNobodyMay: with no freezeOverrideGroups an emergency
// promotion is refused as before, writing nothing, with or without
// approvals; a plain request to a stage with approvals still opens.
func TestFreezeOverrideNobodyMay(t *testing.T) {
	for name, opts := range map[string][]promotion.Option{"no approvals": nil, "approvals": {prodApprovals}} {
		t.Run(name, func(t *testing.T) {
			c := &clock{now: at("2026-03-28T12:00:00Z")}
			e := newEnv(t, nil, append([]promotion.Option{noOverride(t), c.opt()}, opts...)...)
			size := e.size(t)
			if _, err := e.svc.Promote(context.Background(), emergency(ci)); !errors.As(err, new(*promotion.ForbiddenError)) || e.size(t) != size {
				t.Fatalf("emergency with nobody to approve: %v, size %d → %d", err, size, e.size(t))
			}
		})
	}
}

// noOverride is the weekend freeze of prod with nobody to override it.
func noOverride(t *testing.T) promotion.Option {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	from, _ := windows.ParseWeekTime("Fri 16:00")
	to, _ := windows.ParseWeekTime("Mon 08:00")
	return promotion.WithWindows(map[string]promotion.WindowRule{"prod": {
		Schedule: windows.Schedule{{Deny: true, Name: "weekend freeze", Weekly: true, From: from, To: to, Loc: loc}},
	}})
}
