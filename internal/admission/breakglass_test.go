package admission

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stagegate/stagegate/internal/policy"
)

type testClock struct{ t time.Time }

func (c *testClock) now() time.Time { return c.t }

// breakGlassPolicy denies everything and allows break-glass.
func breakGlassPolicy() *fakePolicy {
	return &fakePolicy{decide: func(policy.AdmissionInput) (policy.AdmissionDecision, error) {
		return policy.AdmissionDecision{Deny: []string{"not promoted"}, BreakGlassAllowed: true}, nil
	}}
}

// TestBreakGlassBounded: break-glass cannot grow the ledger without bound.
// A retried review (same UID) and the same break-glass again are recorded
// once; a workload that keeps changing its justification gets a few
// records, then 429s until a minute passes; an oversized justification is
// refused before anything is recorded.
func TestBreakGlassBounded(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)}
	rec := &fakeRecorder{index: 7}
	r := NewReviewer(testStates(), breakGlassPolicy(), WithRecorder(rec), WithClock(clock.now))
	review := func(uid, justification string) *admissionv1.AdmissionResponse {
		req := podRequest(t, map[string]string{BreakGlassAnnotation: justification}, imgB)
		req.UID = types.UID("uid-" + uid)
		return r.Review(context.Background(), "prod", req)
	}
	if resp := review("a", "INC-1"); !resp.Allowed || resp.AuditAnnotations[AuditLedgerIndex] != "7" {
		t.Fatalf("first break-glass: %+v", resp)
	}
	if resp := review("a", "INC-1"); !resp.Allowed || resp.AuditAnnotations[AuditLedgerIndex] != "7" {
		t.Fatalf("retried review: %+v", resp)
	}
	if resp := review("b", "INC-1"); !resp.Allowed {
		t.Fatalf("the same break-glass from another pod: %+v", resp)
	}
	if len(rec.got) != 1 {
		t.Fatalf("recorded %d entries for one break-glass, want 1", len(rec.got))
	}
	// Four more justifications fill the burst; the next one is refused.
	for i := range breakGlassBurst - 1 {
		if resp := review("c", "INC-"+string(rune('2'+i))); !resp.Allowed {
			t.Fatalf("justification %d: %+v", i, resp)
		}
	}
	resp := review("d", "INC-9")
	if resp.Allowed || resp.Result.Code != http.StatusTooManyRequests || !strings.Contains(resp.Result.Message, "waits a minute") {
		t.Fatalf("a record beyond the burst: %+v", resp.Result)
	}
	if len(rec.got) != breakGlassBurst {
		t.Fatalf("recorded %d entries, want %d", len(rec.got), breakGlassBurst)
	}
	clock.t = clock.t.Add(time.Minute)
	if resp := review("e", "INC-9"); !resp.Allowed {
		t.Fatalf("after a minute: %+v", resp.Result)
	}
	// After the reuse window the same break-glass is recorded anew.
	clock.t = clock.t.Add(breakGlassReuse + time.Minute)
	before := len(rec.got)
	if resp := review("f", "INC-1"); !resp.Allowed || len(rec.got) != before+1 {
		t.Fatalf("after the reuse window: allowed %v, records %d → %d", resp.Allowed, before, len(rec.got))
	}

	long := strings.Repeat("x", MaxJustification+1)
	before = len(rec.got)
	resp = review("g", long)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest || !strings.Contains(resp.Result.Message, "at most 1024") {
		t.Fatalf("oversized justification: %+v", resp.Result)
	}
	if len(rec.got) != before {
		t.Fatal("an oversized justification was recorded")
	}
}
