package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

// TestApprovalsOnFollowers: in a stage with approvals, a pipeline asks on
// one follower and a second identity approves on the other: both writes
// are forwarded to the leader, the approval completes the request, and
// every replica holds the request, the approval and the promotion that
// names it, and verifies once stopped.
func TestApprovalsOnFollowers(t *testing.T) {
	h := newHA(t, 3, withConfig(`stages:
- {name: dev, groups: [pipeline], minSoak: 0s, approvals: {required: 1, groups: [release]}}
`))
	lead := h.leader(0)
	f1, f2 := (lead+1)%3, (lead+2)%3
	ref := must(h.pushImage("approved"))
	code, b, err := h.do(context.Background(), f1, http.MethodPost, "/v1/promotions", h.tokens[0],
		map[string]string{"image": ref, "stage": "dev", "reason": "ha approvals"})
	var asked struct {
		Request struct {
			ID     uint64 `json:"id"`
			Needed int    `json:"needed"`
		} `json:"request"`
	}
	if err != nil || code != http.StatusAccepted || json.Unmarshal(b, &asked) != nil || asked.Request.Needed != 1 {
		t.Fatalf("%s: request: %d %v %s", h.ids[f1], code, err, b)
	}
	id := asked.Request.ID
	if code, b, err = h.do(context.Background(), f2, http.MethodPost, fmt.Sprintf("/v1/requests/%d/approvals", id), h.tokens[0],
		map[string]string{"reason": "mine"}); err != nil || code != http.StatusForbidden {
		t.Fatalf("%s: the requester approving: %d %v %s, want 403", h.ids[f2], code, err, b)
	}
	code, b, err = h.do(context.Background(), f2, http.MethodPost, fmt.Sprintf("/v1/requests/%d/approvals", id), h.tokens[1],
		map[string]string{"reason": "looks good"})
	var done struct {
		Receipt ledger.Receipt `json:"receipt"`
	}
	if err != nil || code != http.StatusCreated || json.Unmarshal(b, &done) != nil || done.Receipt.Entry.Kind != ledger.KindPromotion {
		t.Fatalf("%s: approval: %d %v %s", h.ids[f2], code, err, b)
	}
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to hold the completed request", func() bool {
			es := h.entries(i)
			return slices.ContainsFunc(es, func(e ledger.Entry) bool { return e.Kind == ledger.KindRequest && e.Index == id }) &&
				slices.ContainsFunc(es, func(e ledger.Entry) bool { return e.Kind == ledger.KindApproval && e.Subject == "client-01" }) &&
				slices.ContainsFunc(es, func(e ledger.Entry) bool {
					return e.Kind == ledger.KindPromotion && e.Request != nil && *e.Request == id && len(e.Approvals) == 1
				})
		})
	}
	for i, sg := range h.nodes {
		if err := sg.Stop(); err != nil {
			t.Fatalf("%s: stop: %v", sg.Name, err)
		}
		h.ledgerVerify(i)
	}
}
