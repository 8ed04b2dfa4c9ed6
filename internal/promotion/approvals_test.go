package promotion_test

import (
	"context"
	"errors"
	"fmt"
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
	for start := uint64(0); ; pages++ {
		page, next, err := e.svc.Requests(ctx, "prod", promotion.RequestPending, start, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 1000 {
			t.Fatalf("a page of limit 1000 holds %d requests", len(page))
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
