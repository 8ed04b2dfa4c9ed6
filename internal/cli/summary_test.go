package cli

import (
	"bytes"
	"path/filepath"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/testutil/golden"
)

// TestRequestSummary: the one line `promote`, `approve`, `reject` and
// `promote --wait` print of a request, for every state it can be in,
// including the emergency (freeze-override) request before and after
// its approval and a request whose quorum waits for the window.
func TestRequestSummary(t *testing.T) {
	t0 := time.Date(2026, 11, 6, 17, 0, 0, 0, time.UTC)
	base := func() requestView {
		v := requestView{ID: 12, State: "pending", Stage: "prod", Repository: "reg.example/shop/app",
			Digest: "sha256:" + "ab12" + "00000000000000000000000000000000000000000000000000000000000a",
			Reason: "build 7", Time: t0, Expires: t0.Add(72 * time.Hour), Required: 2, Needed: 2}
		v.Requester.Subject, v.Requester.Groups = "ci", []string{"pipeline"}
		return v
	}
	approval := ledger.Approval{Subject: "alice", Groups: []string{"security"}, Reason: "scanned", Time: t0.Add(time.Minute)}
	promoted := uint64(14)
	for name, mutate := range map[string]func(*requestView){
		"pending":           func(*requestView) {},
		"pending-one-in":    func(v *requestView) { v.Approvals, v.Needed = []ledger.Approval{approval}, 1 },
		"pending-no-expiry": func(v *requestView) { v.Expires = time.Time{} },
		"waits-for-window": func(v *requestView) {
			v.Approvals, v.Needed = []ledger.Approval{approval, approval}, 0
			v.Waits = "waits for the window: stage prod opens at 2026-11-09T07:00:00Z"
		},
		"emergency": func(v *requestView) {
			v.Required, v.Needed, v.FreezeOverride, v.FreezeGroups = 1, 1, true, []string{"sre-oncall", "sre"}
		},
		"emergency-approved": func(v *requestView) {
			v.Required, v.Needed, v.FreezeOverride, v.FreezeGroups = 1, 1, true, []string{"sre-oncall"}
			v.FreezeApprovedBy = "oncall"
		},
		"rejected": func(v *requestView) {
			v.State, v.Rejection = "rejected", &ledger.Approval{Subject: "bob", Reason: "CVE-2026-1 unfixed"}
		},
		"rejected-unknown": func(v *requestView) { v.State = "rejected" },
		"approved":         func(v *requestView) { v.State, v.Promotion = "approved", &promoted },
		"expired":          func(v *requestView) { v.State, v.Approvals = "expired", []ledger.Approval{approval} },
		"approved-unknown": func(v *requestView) { v.State = "approved" },
	} {
		t.Run(name, func(t *testing.T) {
			v := base()
			mutate(&v)
			golden.Assert(t, filepath.Join("testdata", "summary-"+name+".txt"), []byte(v.summary()+"\n"), *update)
		})
	}
}

// TestRequestsTable: `stagegate requests` as a table, approvers listed.
func TestRequestsTable(t *testing.T) {
	t0 := time.Date(2026, 11, 6, 17, 0, 0, 0, time.UTC)
	a := requestView{ID: 12, State: "pending", Stage: "prod", Digest: "sha256:ab1200000000000000000000000000000000000000000000000000000000000a",
		Expires: t0.Add(72 * time.Hour), Required: 2, Approvals: []ledger.Approval{{Subject: "alice"}}}
	a.Requester.Subject = "ci"
	b := requestView{ID: 13, State: "rejected", Stage: "test", Digest: "sha256:cd3400000000000000000000000000000000000000000000000000000000000b", Required: 1}
	b.Requester.Subject = "ci"
	var out bytes.Buffer
	if err := printAnswer(Streams{Out: &out}, outputTable, nil, requestsTable([]requestView{a, b})); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, filepath.Join("testdata", "requests.table"), out.Bytes(), *update)
}
