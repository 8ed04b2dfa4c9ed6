package ha

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// oncallToken is the on-call engineer's, the one member of sre.
var oncallToken = "sgha_oncall_" + strings.Repeat("y", 16)

// TestEmergencyPromotionOnFollowers: the emergency path through a cluster.
// dev is frozen by a one-off window around the whole test (real time:
// serve takes no injected clock, and the window does not end while it
// runs). On one follower a plain promotion is refused as closed, and the
// pipeline's emergency promotion (freezeOverride, from outside
// freezeOverrideGroups) opens a request marked as such. On the other
// follower an approval from outside sre is refused, and the on-call
// engineer's approval completes the promotion during the freeze. Every
// replica holds the request and the promotion that names it, marked
// freezeOverride, and verifies once stopped.
func TestEmergencyPromotionOnFollowers(t *testing.T) {
	now := time.Now().UTC()
	h := newHA(t, 3, withToken(oncallToken, "oncall", "sre"), withConfig(fmt.Sprintf(`stages:
- name: dev
  groups: [pipeline]
  minSoak: 0s
  freezeOverrideGroups: [sre]
  windows:
  - {deny: ha freeze, start: %q, end: %q}
`, now.Add(-time.Hour).Format(time.RFC3339), now.Add(2*time.Hour).Format(time.RFC3339))))
	lead := h.leader(0)
	f1, f2 := (lead+1)%3, (lead+2)%3
	ref := must(h.pushImage("emergency"))

	code, b, err := h.do(context.Background(), f1, http.MethodPost, "/v1/promotions", h.tokens[0],
		map[string]any{"image": ref, "stage": "dev", "reason": "a plain promotion"})
	if err != nil || code != http.StatusForbidden || !strings.Contains(string(b), "closed for promotions") {
		t.Fatalf("%s: plain promotion during the freeze: %d %v %s, want 403 closed", h.ids[f1], code, err, b)
	}
	code, b, err = h.do(context.Background(), f1, http.MethodPost, "/v1/promotions", h.tokens[0],
		map[string]any{"image": ref, "stage": "dev", "reason": "INC-7: checkout down", "freezeOverride": true})
	var asked struct {
		Request struct {
			ID             uint64   `json:"id"`
			FreezeOverride bool     `json:"freezeOverride"`
			FreezeGroups   []string `json:"freezeGroups"`
		} `json:"request"`
	}
	if err != nil || code != http.StatusAccepted || json.Unmarshal(b, &asked) != nil || !asked.Request.FreezeOverride ||
		!slices.Equal(asked.Request.FreezeGroups, []string{"sre"}) {
		t.Fatalf("%s: emergency request: %d %v %s, want 202 with a freeze-override request for sre", h.ids[f1], code, err, b)
	}
	id := asked.Request.ID
	approve := fmt.Sprintf("/v1/requests/%d/approvals", id)
	if code, b, err = h.do(context.Background(), f2, http.MethodPost, approve, h.tokens[1],
		map[string]string{"reason": "not mine to give"}); err != nil || code != http.StatusForbidden {
		t.Fatalf("%s: approval from outside sre: %d %v %s, want 403", h.ids[f2], code, err, b)
	}
	code, b, err = h.do(context.Background(), f2, http.MethodPost, approve, oncallToken,
		map[string]string{"reason": "INC-7 fix, checked"})
	var done struct {
		Receipt ledger.Receipt `json:"receipt"`
	}
	if err != nil || code != http.StatusCreated || json.Unmarshal(b, &done) != nil ||
		done.Receipt.Entry.Kind != ledger.KindPromotion || !done.Receipt.Entry.FreezeOverride {
		t.Fatalf("%s: on-call approval: %d %v %s, want 201 with a freeze-override promotion", h.ids[f2], code, err, b)
	}
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to hold the emergency promotion", func() bool {
			es := h.entries(i)
			return slices.ContainsFunc(es, func(e ledger.Entry) bool {
				return e.Kind == ledger.KindRequest && e.Index == id && e.FreezeOverride
			}) && slices.ContainsFunc(es, func(e ledger.Entry) bool {
				return e.Kind == ledger.KindApproval && e.Subject == "oncall" && e.Request != nil && *e.Request == id
			}) && slices.ContainsFunc(es, func(e ledger.Entry) bool {
				return e.Kind == ledger.KindPromotion && e.FreezeOverride && e.Request != nil && *e.Request == id
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
