package promotion_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// prodApprovals: prod needs two approvals from security.
var prodApprovals = promotion.WithApprovals(map[string]promotion.ApprovalRule{
	"prod": {Required: 2, Groups: []string{"security"}, ExcludeRequester: true, Expires: 72 * time.Hour},
})

// TestManyPendingRequests is the flood: 10,000 pending requests to prod.
// Listing them is paginated (a page holds at most its limit, and the
// pages together hold each request once), re-sending one returns it, and
// an approval still finds its request at once: what a request reads is
// its own history, not the others'.
func TestManyPendingRequests(t *testing.T) {
	const n = 10000
	e := newEnv(t, nil, prodApprovals)
	for i := range n {
		ref := fmt.Sprintf("%s:flood-%d", repoApp, i)
		e.resolver.images[ref] = registry.Resolved{Reference: ref, Repository: repoApp, Tag: fmt.Sprintf("flood-%d", i), Digest: digestOf(ref)}
	}
	ctx := context.Background()
	e.promote(t, refApp, "dev") // entry 0: a promotion, not a request
	var first, last uint64
	for i := range n {
		res, err := e.svc.Promote(ctx, promotion.Request{Image: fmt.Sprintf("%s:flood-%d", repoApp, i), Stage: "prod", Requester: ci})
		if err != nil || res.Request == nil || !res.Created {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
		if i == 0 {
			first = res.Request.ID
		}
		last = res.Request.ID
	}
	size := e.size(t)
	again, err := e.svc.Promote(ctx, promotion.Request{Image: repoApp + ":flood-0", Stage: "prod", Requester: ci})
	if err != nil || again.Created || again.Request == nil || again.Request.ID != first || e.size(t) != size {
		t.Fatalf("re-sent request: %+v, %v; want request %d and nothing written", again.Request, err, first)
	}

	seen := map[uint64]bool{}
	pages := 0
	// Reported, not asserted: what one listing of every page costs.
	listed := time.Now()
	var before, peak runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	defer func() {
		t.Logf("listed %d pending requests in %d pages in %s; heap in use after each page at most %d KiB above the start",
			len(seen), pages+1, time.Since(listed).Round(time.Millisecond), (peak.HeapInuse-min(peak.HeapInuse, before.HeapInuse))>>10)
	}()
	for start := uint64(0); ; pages++ {
		page, next, err := e.svc.Requests(ctx, "prod", promotion.RequestPending, start, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 1000 {
			t.Fatalf("a page of limit 1000 holds %d requests", len(page))
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if ms.HeapInuse > peak.HeapInuse {
			peak = ms
		}
		for _, v := range page {
			if seen[v.ID] {
				t.Fatalf("request %d listed twice", v.ID)
			}
			seen[v.ID] = true
		}
		if next == nil {
			break
		}
		if *next <= start {
			t.Fatalf("next page %d does not move past %d", *next, start)
		}
		start = *next
	}
	if len(seen) != n || pages < n/1000-1 {
		t.Fatalf("listed %d requests in %d pages, want %d in about %d", len(seen), pages+1, n, n/1000)
	}

	sec := policy.Identity{Subject: "sec", Groups: []string{"security"}}
	res, err := e.svc.Approve(ctx, promotion.Answer{ID: last, Reason: "ok", By: sec})
	if err != nil || !res.Created || res.Request.Needed != 1 {
		t.Fatalf("approving the last of %d requests: %+v, %v", n, res.Request, err)
	}
	if _, err := e.svc.Approve(ctx, promotion.Answer{ID: last + 1000, Reason: "ok", By: sec}); !errors.Is(err, promotion.ErrRequestNotFound) {
		t.Fatalf("approving a request id past the ledger: %v", err)
	}
	if _, err := e.svc.Approve(ctx, promotion.Answer{ID: 0, Reason: "ok", By: sec}); !errors.Is(err, promotion.ErrRequestNotFound) {
		t.Fatalf("approving an entry that is not a request: %v", err)
	}
	if st := e.state(t, digestOf(repoApp+":flood-0"), "prod"); st.Promoted {
		t.Fatalf("a pending request promoted: %+v", st)
	}
	if k := res.Receipt.Entry.Kind; k != ledger.KindApproval {
		t.Errorf("the approval recorded a %s", k)
	}
}

// TestConcurrentApprovals: two approvers answer at once a request that
// needs both. Whatever the interleaving, the request completes exactly
// once, with both approvals listed, and neither approver gets an error.
func TestConcurrentApprovals(t *testing.T) {
	for round := range 5 {
		t.Run(fmt.Sprint(round), func(t *testing.T) {
			e := newEnv(t, nil, prodApprovals)
			byDigest(e)
			ctx := context.Background()
			res, err := e.svc.Promote(ctx, promotion.Request{Image: refApp, Stage: "prod", Requester: ci})
			if err != nil || res.Request == nil {
				t.Fatalf("request: %+v, %v", res, err)
			}
			id := res.Request.ID
			errs := make(chan error, 2)
			for _, who := range []string{"alice", "bob"} {
				go func() {
					_, err := e.svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: policy.Identity{Subject: who, Groups: []string{"security"}}})
					errs <- err
				}()
			}
			for range 2 {
				if err := <-errs; err != nil {
					t.Errorf("approval: %v", err)
				}
			}
			v, err := e.svc.Request(ctx, id)
			if err != nil || v.State != promotion.RequestApproved || len(v.Approvals) != 2 {
				t.Fatalf("request after both approvals: %+v, %v", v, err)
			}
			promos := 0
			all, err := e.ledger.Entries(0, e.size(t))
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range all {
				if en.Kind == ledger.KindPromotion {
					promos++
					if len(en.Approvals) != 2 {
						t.Errorf("the promotion lists %d approvals, want 2", len(en.Approvals))
					}
				}
			}
			if promos != 1 {
				t.Errorf("%d promotions recorded, want 1", promos)
			}
		})
	}
}

// TestRequestOverridesRevocation: in a stage with approvals, putting a
// revoked digest back is a request that says so; its completion is the
// override, recorded on the promotion.
func TestRequestOverridesRevocation(t *testing.T) {
	e := newEnv(t, nil, prodDuties)
	byDigest(e)
	ctx := context.Background()
	e.promote(t, refApp, "prod")
	rv, err := e.svc.Revoke(ctx, promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "CVE-1", Requester: security})
	if err != nil {
		t.Fatal(err)
	}
	svc := promotion.New(e.faults, e.signer, e.policy, e.resolver, stages, promotion.WithClock(func() time.Time { return t0 }), prodDuties, prodApprovals)
	if _, err := svc.Promote(ctx, promotion.Request{Image: refApp, Stage: "prod", Requester: security}); !errors.As(err, new(*promotion.RevokedError)) {
		t.Fatalf("plain request for a revoked digest: %v, want a *RevokedError", err)
	}
	res, err := svc.Promote(ctx, promotion.Request{Image: refApp, Stage: "prod", Reason: "false positive", OverrideRevocation: true, Requester: security})
	if err != nil || res.Request == nil || res.Request.OverridesRevocation == nil || *res.Request.OverridesRevocation != rv.Receipt.Entry.Index {
		t.Fatalf("override request: %+v, %v", res.Request, err)
	}
	for _, who := range []string{"alice", "bob"} {
		res, err = svc.Approve(ctx, promotion.Answer{ID: res.Request.ID, Reason: "ok", By: policy.Identity{Subject: who, Groups: []string{"security"}}})
		if err != nil {
			t.Fatalf("%s approves: %v", who, err)
		}
	}
	ent := res.Receipt.Entry
	if ent.Kind != ledger.KindPromotion || ent.OverridesRevocation == nil || *ent.OverridesRevocation != rv.Receipt.Entry.Index {
		t.Fatalf("completion = %+v, want a promotion overriding %d", ent, rv.Receipt.Entry.Index)
	}
	if st := e.state(t, digestApp, "prod"); !st.Active() {
		t.Errorf("prod state %+v, want active again", st)
	}
}

// byDigest lets the resolver find refApp by digest, as a completion
// resolves the request's repository@digest.
func byDigest(e *env) {
	img := e.resolver.images[refApp]
	img.Reference, img.Tag = repoApp+"@"+digestApp, ""
	e.resolver.images[img.Reference] = img
}
