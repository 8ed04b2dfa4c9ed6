package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/policies"
)

// TestFreezeOverrideRequest: through HTTP, with the real policy engine and
// ledger, prod frozen for the weekend with security as its
// freezeOverrideGroups. The release manager (allowed into prod, not in
// security) asks for an emergency promotion: 202, a signed request marked
// as a freeze override. Their own approval, one from release (not in
// freezeOverrideGroups), a visitor's and a groupless one are 403 and write
// nothing. Alice (security) approves: 201, the promotion during the
// freeze, its entry and predicate recording the freeze and her approval,
// its receipt verifying. Once prod is open, the same flag is a plain
// promotion: 201 at once, nothing about a freeze.
func TestFreezeOverrideRequest(t *testing.T) {
	e := newEnvWith(t, func(c *config.Config) {
		prod := &c.Stages[len(c.Stages)-1]
		prod.Windows = []config.Window{{Deny: "weekend freeze", TimeZone: "Europe/Berlin", From: "Fri 16:00", To: "Mon 08:00"}}
		prod.FreezeOverrideGroups = []string{"security"}
	}, policies.FS)
	for _, img := range []string{e.sample.Image, e.sample.Index} {
		e.toTest(t, img)
		if code, body := e.post(t, releaseToken, "/v1/promotions", promoteBody(img, "stage")); code != http.StatusCreated {
			t.Fatalf("promote to stage: %d %s", code, body)
		}
	}
	e.clock.Add(123 * time.Hour) // Friday 6 November 2026, after 17:00 in Berlin: frozen
	emergency := func(image string) string {
		return fmt.Sprintf(`{"image":%q,"stage":"prod","reason":"INC-7: checkout down","freezeOverride":true}`, image)
	}
	lv, _ := ledgertestVerifier(e)

	code, a := e.request(t, releaseToken, "/v1/promotions", emergency(e.sample.Image))
	if code != http.StatusAccepted || a.Request.State != promotion.RequestPending || !a.Request.FreezeOverride || a.Request.Needed != 1 ||
		a.Receipt.Entry.Kind != ledger.KindRequest || !a.Receipt.Entry.FreezeOverride {
		t.Fatalf("emergency request: %d %+v", code, a)
	}
	if err := ledger.VerifyReceipt(a.Receipt, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("the request's receipt does not verify: %v", err)
	}
	var reqPred signing.RequestPredicate
	predicateOf(t, e, a.Receipt.Entry, &reqPred)
	if reqPred.FreezeOverride == nil || reqPred.FreezeOverride.Window != "weekend freeze" || !reqPred.FreezeOverride.NextOpen.Equal(time.Date(2026, 11, 9, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("request predicate freezeOverride = %+v", reqPred.FreezeOverride)
	}
	id := a.Request.ID
	approve := fmt.Sprintf("/v1/requests/%d/approvals", id)

	for name, tc := range map[string]struct {
		token string
		says  string
	}{
		"own request":                          {releaseToken, "their own"},
		"release, not in freezeOverrideGroups": {bobToken, "emergency promotion during a freeze"},
		"a visitor":                            {outsiderToken, "security"},
		"no groups":                            {nogroupsToken, "security"},
	} {
		t.Run(name, func(t *testing.T) {
			size, cp := e.size(t), e.checkpoint(t)
			code, body := e.post(t, tc.token, approve, `{"reason":"lgtm"}`)
			if code != http.StatusForbidden || !strings.Contains(string(body), tc.says) {
				t.Errorf("%d %s, want 403 saying %q", code, body, tc.says)
			}
			if e.size(t) != size || e.checkpoint(t) != cp {
				t.Errorf("ledger changed: size %d → %d", size, e.size(t))
			}
		})
	}

	code, a = e.request(t, aliceToken, approve, `{"reason":"INC-7 confirmed, rollback impossible"}`)
	if code != http.StatusCreated || a.Request.State != promotion.RequestApproved || a.Request.FreezeApprovedBy != "alice" {
		t.Fatalf("the freeze-override approval: %d %+v", code, a)
	}
	ent := a.Receipt.Entry
	if ent.Kind != ledger.KindPromotion || !ent.FreezeOverride || ent.Request == nil || *ent.Request != id || len(ent.Approvals) != 1 ||
		ent.Approvals[0].Subject != "alice" || ent.Subject != "release-manager" {
		t.Errorf("promotion entry = %+v", ent)
	}
	if err := ledger.VerifyReceipt(a.Receipt, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("the promotion's receipt does not verify: %v", err)
	}
	var pred signing.PromotionPredicate
	predicateOf(t, e, ent, &pred)
	if fo := pred.FreezeOverride; fo == nil || fo.Window != "weekend freeze" || fo.ApprovedBy != "alice" ||
		!fo.NextOpen.Equal(time.Date(2026, 11, 9, 7, 0, 0, 0, time.UTC)) || len(pred.Approvals) != 1 || pred.Approvals[0].Subject != "alice" {
		t.Errorf("promotion predicate: freezeOverride %+v, approvals %+v", pred.FreezeOverride, pred.Approvals)
	}
	if s, _, err := e.ledger.State(ent.Digest, "prod"); err != nil || !s.Active() {
		t.Errorf("prod state %+v %v, want active", s, err)
	}

	e.clock.Add(70 * time.Hour) // Monday 9 November, 16:00 in Berlin: open
	code, body := e.post(t, releaseToken, "/v1/promotions", emergency(e.sample.Index))
	var rc ledger.Receipt
	if err := json.Unmarshal(body, &rc); err != nil || code != http.StatusCreated || rc.Entry.Kind != ledger.KindPromotion || rc.Entry.FreezeOverride {
		t.Fatalf("the flag once open: %d %s, want a plain promotion", code, body)
	}
	var plain signing.PromotionPredicate
	predicateOf(t, e, rc.Entry, &plain)
	if plain.FreezeOverride != nil {
		t.Errorf("a promotion while open records a freeze override: %+v", plain.FreezeOverride)
	}
}

func predicateOf(t *testing.T, e *env, ent ledger.Entry, into any) {
	t.Helper()
	st, err := e.verifier.Verify(ent.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(st.Predicate, into); err != nil {
		t.Fatal(err)
	}
}
