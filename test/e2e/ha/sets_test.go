package ha

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

// TestPromotionSetOnAFollower: a set asked of a follower is forwarded,
// committed as one Raft command, and held by every replica, entry for
// entry; a set with a missing image records nothing anywhere.
func TestPromotionSetOnAFollower(t *testing.T) {
	h := newHA(t, 3)
	lead := h.leader(0)
	f := (lead + 1) % 3
	app, cfg := must(h.pushImage("set-app")), must(h.pushImage("set-config"))
	missing := app[:strings.Index(app, "@")] + ":never-pushed"

	code, b, err := h.do(context.Background(), f, http.MethodPost, "/v1/promotion-sets", h.tokens[0],
		map[string]any{"images": []string{app, missing}, "stage": "dev"})
	if err != nil || code != http.StatusNotFound {
		t.Fatalf("%s: a set with a missing image: %d %v %s, want 404", h.ids[f], code, err, b)
	}
	code, b, err = h.do(context.Background(), f, http.MethodPost, "/v1/promotion-sets", h.tokens[0],
		map[string]any{"images": []string{app, cfg}, "stage": "dev", "reason": "ha set"})
	var sr ledger.SetReceipt
	if err != nil || code != http.StatusCreated || json.Unmarshal(b, &sr) != nil || len(sr.Members) != 2 {
		t.Fatalf("%s: set: %d %v %s", h.ids[f], code, err, b)
	}
	if sr.Members[0].LedgerIndex != 0 || sr.Members[1].LedgerIndex != 1 {
		t.Fatalf("members %+v: the refused set wrote something before this one", sr.Members)
	}
	var want []ledger.Entry
	for _, rc := range sr.Receipts {
		want = append(want, rc.Entry)
	}
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to hold the set", func() bool { return len(h.entries(i)) >= 2 })
		got := h.entries(i)
		if len(got) != 2 || !slices.EqualFunc(got, want, func(a, b ledger.Entry) bool {
			return string(canonical(t, a)) == string(canonical(t, b))
		}) {
			t.Fatalf("%s holds %d entries that differ from the set's receipt", h.ids[i], len(got))
		}
	}
	for i, sg := range h.nodes {
		if err := sg.Stop(); err != nil {
			t.Fatalf("%s: stop: %v", sg.Name, err)
		}
		h.ledgerVerify(i)
	}
}
