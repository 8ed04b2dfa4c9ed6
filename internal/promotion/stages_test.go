package promotion_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// TestStagesPending: a stage view lists the stage's pending requests,
// oldest first and at most 20 with pendingMore, and not those that have
// expired, which it does not even read (they are before the binary
// search's start).
func TestStagesPending(t *testing.T) {
	c := &clock{now: at("2026-03-02T09:00:00Z")}
	e := newEnv(t, nil, prodApprovals, c.opt())
	ctx := context.Background()
	request := func(i int) uint64 {
		ref := fmt.Sprintf("%s:r-%d", repoApp, i)
		e.resolver.images[ref] = registry.Resolved{Reference: ref, Repository: repoApp, Tag: fmt.Sprintf("r-%d", i), Digest: digestOf(ref)}
		res, err := e.svc.Promote(ctx, promotion.Request{Image: ref, Stage: "prod", Requester: ci})
		if err != nil || res.Request == nil {
			t.Fatalf("request %d: %+v, %v", i, res, err)
		}
		return res.Request.ID
	}
	for i := range 3 {
		request(i) // expire before the others are made
	}
	c.Set(at("2026-03-06T09:00:00Z")) // four days later
	var live []uint64
	for i := 3; i < 28; i++ {
		live = append(live, request(i))
	}

	stage := func() promotion.StageView {
		t.Helper()
		list := e.svc.Stages(ctx)
		i := slices.IndexFunc(list, func(v promotion.StageView) bool { return v.Name == "prod" })
		if i < 0 {
			t.Fatalf("no prod in %+v", list)
		}
		return list[i]
	}
	prod := stage()
	if !slices.Equal(prod.Pending, live[:20]) || !prod.PendingMore {
		t.Errorf("pending %v (more %v), want %v and more", prod.Pending, prod.PendingMore, live[:20])
	}
	if r := prod.ApprovalRule; r == nil || r.Required != 2 || r.Expires != (72*time.Hour).String() {
		t.Errorf("approvalRule = %+v", r)
	}

	c.Set(at("2026-03-09T10:00:00Z")) // every request has expired
	if prod := stage(); len(prod.Pending) != 0 || prod.PendingMore {
		t.Errorf("after expiry: pending %v (more %v), want none", prod.Pending, prod.PendingMore)
	}
}
