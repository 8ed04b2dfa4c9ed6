package cluster_test

import (
	"context"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

type allowAll struct{}

func (allowAll) Promotion(context.Context, policy.PromotionInput) ([]string, error) { return nil, nil }
func (allowAll) Digest() string                                                     { return digest(0) }

type oneImage struct{ img registry.Resolved }

func (o oneImage) Resolve(context.Context, string) (registry.Resolved, error) { return o.img, nil }

// TestApprovalsThroughRaft: the promotion service's approvals on a
// 3-node cluster's leader (its appends go through Raft, its builds read
// the request's history in ViewPending): a request, its approval and the
// completing promotion are replicated, every replica finds them under the
// request's history name, and every ledger verifies.
func TestApprovalsThroughRaft(t *testing.T) {
	c := newCluster(t, 3)
	n := c.nodes[c.leader()]
	img := registry.Resolved{Repository: "registry.test/app", Digest: digest(7)}
	svc := promotion.New(n, c.k.att, allowAll{}, oneImage{img}, []string{"dev", "prod"},
		promotion.WithApprovals(map[string]promotion.ApprovalRule{"prod": {Required: 1, Groups: []string{"security"}, ExcludeRequester: true, Expires: time.Hour}}))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ci := policy.Identity{Subject: "ci", Groups: []string{"pipeline"}}
	res, err := svc.Promote(ctx, promotion.Request{Image: "registry.test/app@" + img.Digest, Stage: "prod", Requester: ci})
	if err != nil || res.Request == nil || !res.Created {
		t.Fatalf("request: %+v, %v", res, err)
	}
	id := res.Request.ID
	again, err := svc.Promote(ctx, promotion.Request{Image: "registry.test/app@" + img.Digest, Stage: "prod", Requester: ci})
	if err != nil || again.Created || again.Request == nil || again.Request.ID != id {
		t.Fatalf("re-sent request: %+v, %v", again.Request, err)
	}
	done, err := svc.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: policy.Identity{Subject: "sec", Groups: []string{"security"}}})
	if err != nil || done.Receipt.Entry.Kind != ledger.KindPromotion || done.Request.State != promotion.RequestApproved {
		t.Fatalf("approval: %+v, %v", done, err)
	}
	c.converged(3)
	for i, node := range c.nodes {
		page, _, err := node.FSM().Ledger().HistoryPage(ledger.RequestName(id), 0, 0, 0)
		if err != nil || len(page) != 3 || page[0].Kind != ledger.KindRequest || page[1].Kind != ledger.KindApproval || page[2].Kind != ledger.KindPromotion {
			t.Errorf("node %d: history of request %d = %+v, %v", i, id, page, err)
		}
	}
}
