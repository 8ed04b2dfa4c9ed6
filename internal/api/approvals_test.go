package api_test

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/policies"
)

// securityRule is a rule a security team writes on input.approvals: one
// of the approvals of stage must come from security. input.approvals is
// absent when the request is made, so the rule applies at completion.
const securityRule = `package stagegate.promotion

deny contains "stage needs an approval from security" if {
	input.stage == "stage"
	approvals := input.approvals
	not security_approved(approvals)
}

security_approved(approvals) if {
	some a in approvals
	"security" in a.groups
}
`

// withSecurityRule is the built-in policies plus securityRule.
func withSecurityRule(t *testing.T) fs.FS {
	t.Helper()
	m := fstest.MapFS{"security.rego": {Data: []byte(securityRule)}}
	err := fs.WalkDir(policies.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS, p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stageApprovals: promotions to stage need two approvals from release or
// security, not the requester's, within 72h.
func stageApprovals(c *config.Config) {
	c.Stages[2].Approvals = &config.Approvals{Required: 2, Groups: []string{"release", "security"}}
}

type requestAnswer struct {
	Request promotion.RequestView `json:"request"`
	Receipt ledger.Receipt        `json:"receipt"`
	Error   string                `json:"error"`
}

func (e *env) request(t *testing.T, token, path, body string) (int, requestAnswer) {
	t.Helper()
	var code int
	var b []byte
	if body == "" {
		code, b = e.get(t, token, path)
	} else {
		code, b = e.post(t, token, path, body)
	}
	var a requestAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("%s: %d %s: %v", path, code, b, err)
	}
	return code, a
}

// toStage promotes the sample image to dev and test and soaks it.
func (e *env) toTest(t *testing.T, image string) {
	t.Helper()
	for _, st := range []string{"dev", "test"} {
		if code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(image, st)); code != http.StatusCreated {
			t.Fatalf("promote %s: %d %s", st, code, body)
		}
	}
	e.clock.Add(2 * time.Hour)
}

// TestApprovals goes through the real policy engine (with a security
// team's rule on input.approvals) and the real ledger: a promotion to a
// stage with approvals is 202 with a pending request; re-sending it
// returns the same one; the requester's own approval, a visitor's, a
// forged id, a double approval and an approval the policy refuses at
// completion each write nothing; the quorum completes the request with a
// promotion whose entry and signed predicate list the approvals, and
// whose receipt verifies; a completed request takes no more answers.
func TestApprovals(t *testing.T) {
	e := newEnvWith(t, stageApprovals, withSecurityRule(t))
	e.toTest(t, e.sample.Image)

	before := e.size(t)
	code, a := e.request(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "stage"))
	if code != http.StatusAccepted || a.Request.State != promotion.RequestPending || a.Request.Needed != 2 ||
		a.Request.Requester.Subject != "release-manager" || a.Receipt.Entry.Kind != ledger.KindRequest || e.size(t) != before+1 {
		t.Fatalf("request: %d %+v, ledger %d → %d", code, a, before, e.size(t))
	}
	id := a.Request.ID
	lv, _ := ledgertestVerifier(e)
	if err := ledger.VerifyReceipt(a.Receipt, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("the request's receipt does not verify: %v", err)
	}
	if code, again := e.request(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "stage")); code != http.StatusAccepted || again.Request.ID != id {
		t.Fatalf("re-sent request: %d %+v, want 202 with request %d", code, again.Request, id)
	}
	approve := fmt.Sprintf("/v1/requests/%d/approvals", id)

	size := e.size(t)
	for name, tc := range map[string]struct {
		token, path string
		status      int
		says        string
	}{
		"own request":        {releaseToken, approve, http.StatusForbidden, "their own"},
		"group not allowed":  {outsiderToken, approve, http.StatusForbidden, "release, security"},
		"no groups":          {nogroupsToken, approve, http.StatusForbidden, "release, security"},
		"forged id":          {aliceToken, "/v1/requests/999999/approvals", http.StatusNotFound, "no such promotion request"},
		"id of a promotion":  {aliceToken, "/v1/requests/0/approvals", http.StatusNotFound, "no such promotion request"},
		"id not a number":    {aliceToken, "/v1/requests/abc/approvals", http.StatusBadRequest, "integer"},
		"rejection by other": {outsiderToken, fmt.Sprintf("/v1/requests/%d/rejections", id), http.StatusForbidden, "reject"},
	} {
		t.Run(name, func(t *testing.T) {
			code, body := e.post(t, tc.token, tc.path, `{"reason":"lgtm"}`)
			if code != tc.status || !strings.Contains(string(body), tc.says) {
				t.Errorf("%d %s, want %d saying %q", code, body, tc.status, tc.says)
			}
			if n := e.size(t); n != size {
				t.Errorf("ledger grew to %d, want %d", n, size)
			}
		})
	}

	// bob (release) approves: one more needed; approving twice counts once.
	if code, a = e.request(t, bobToken, approve, `{"reason":"release notes ok"}`); code != http.StatusCreated || a.Request.Needed != 1 ||
		a.Receipt.Entry.Kind != ledger.KindApproval || a.Receipt.Entry.Request == nil || *a.Receipt.Entry.Request != id {
		t.Fatalf("first approval: %d %+v", code, a)
	}
	size = e.size(t)
	if code, a = e.request(t, bobToken, approve, `{"reason":"again"}`); code != http.StatusOK || a.Request.Needed != 1 || e.size(t) != size {
		t.Fatalf("double approval: %d %+v, ledger %d → %d", code, a.Request, size, e.size(t))
	}
	// carol (release) would make the quorum, but the security rule wants
	// one from security: 403 from the policy, and her approval is not
	// written.
	code, body := e.post(t, carolToken, approve, `{"reason":"fine by me"}`)
	if code != http.StatusForbidden || !strings.Contains(string(body), "stage needs an approval from security") || e.size(t) != size {
		t.Fatalf("quorum without security: %d %s, ledger %d → %d", code, body, size, e.size(t))
	}
	// alice (security) completes it.
	code, a = e.request(t, aliceToken, approve, `{"reason":"scanned: no criticals"}`)
	if code != http.StatusCreated || a.Request.State != promotion.RequestApproved || a.Receipt.Entry.Kind != ledger.KindPromotion ||
		a.Request.Promotion == nil || *a.Request.Promotion != a.Receipt.Entry.Index {
		t.Fatalf("completing approval: %d %+v", code, a)
	}
	ent := a.Receipt.Entry
	if ent.Request == nil || *ent.Request != id || len(ent.Approvals) != 2 || ent.Approvals[0].Subject != "bob" || ent.Approvals[1].Subject != "alice" ||
		ent.Approvals[1].Reason != "scanned: no criticals" || ent.Approvals[1].Groups[0] != "security" || ent.Subject != "release-manager" {
		t.Errorf("promotion entry = %+v, want request %d with bob's and alice's approvals, by the requester", ent, id)
	}
	if err := ledger.VerifyReceipt(a.Receipt, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("the promotion's receipt does not verify: %v", err)
	}
	st, err := e.verifier.Verify(ent.Envelope)
	if err != nil {
		t.Fatal(err)
	}
	var pred signing.PromotionPredicate
	if err := json.Unmarshal(st.Predicate, &pred); err != nil {
		t.Fatal(err)
	}
	if pred.Request == nil || *pred.Request != id || len(pred.Approvals) != 2 || pred.Approvals[1].Subject != "alice" ||
		pred.Approvals[1].LedgerIndex != ent.Approvals[1].Index || !pred.Approvals[1].Time.Equal(ent.Approvals[1].Time) {
		t.Errorf("predicate request %v approvals %+v, want request %d and the two approvals", pred.Request, pred.Approvals, id)
	}
	if s, _, err := e.ledger.State(ent.Digest, "stage"); err != nil || !s.Active() || s.PromotedIndex != ent.Index {
		t.Errorf("stage state %+v %v, want active from %d", s, err, ent.Index)
	}

	size = e.size(t)
	code, body = e.post(t, carolToken, approve, `{"reason":"late"}`)
	if code != http.StatusConflict || !strings.Contains(string(body), "approved") || e.size(t) != size {
		t.Errorf("approving a completed request: %d %s, want 409", code, body)
	}
	if code, body = e.post(t, bobToken, fmt.Sprintf("/v1/requests/%d/rejections", id), `{"reason":"late"}`); code != http.StatusConflict || e.size(t) != size {
		t.Errorf("rejecting a completed request: %d %s, want 409", code, body)
	}

	var list struct {
		Requests []promotion.RequestView `json:"requests"`
	}
	code, body = e.get(t, outsiderToken, "/v1/requests?stage=stage&state=approved")
	if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK || len(list.Requests) != 1 || list.Requests[0].ID != id {
		t.Errorf("approved requests: %d %s", code, body)
	}
	code, body = e.get(t, outsiderToken, "/v1/requests?stage=stage&state=pending")
	if err := json.Unmarshal(body, &list); err != nil || code != http.StatusOK || len(list.Requests) != 0 {
		t.Errorf("pending requests: %d %s, want none", code, body)
	}
	if code, body = e.get(t, outsiderToken, "/v1/requests?stage=nope"); code != http.StatusBadRequest {
		t.Errorf("requests of an unknown stage: %d %s", code, body)
	}
}

// TestRequestRejectedAndExpired: a rejection closes a request (approvals
// after it are 409, nothing written); a request left alone past expires
// takes no approval either, and a new request can then be made.
func TestRequestRejectedAndExpired(t *testing.T) {
	e := newEnvWith(t, stageApprovals, policies.FS)
	e.toTest(t, e.sample.Image)
	open := func() uint64 {
		t.Helper()
		code, a := e.request(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "stage"))
		if code != http.StatusAccepted {
			t.Fatalf("request: %d %+v", code, a)
		}
		return a.Request.ID
	}
	id := open()
	code, a := e.request(t, aliceToken, fmt.Sprintf("/v1/requests/%d/rejections", id), `{"reason":"CVE open"}`)
	if code != http.StatusCreated || a.Request.State != promotion.RequestRejected || a.Receipt.Entry.Kind != ledger.KindRejection || a.Request.Rejection.Subject != "alice" {
		t.Fatalf("rejection: %d %+v", code, a)
	}
	size := e.size(t)
	if code, body := e.post(t, bobToken, fmt.Sprintf("/v1/requests/%d/approvals", id), `{"reason":"x"}`); code != http.StatusConflict || !strings.Contains(string(body), "rejected") || e.size(t) != size {
		t.Errorf("approving a rejected request: %d %s", code, body)
	}

	second := open()
	if second == id {
		t.Fatal("a rejected request was returned as pending")
	}
	if code, _ := e.request(t, bobToken, fmt.Sprintf("/v1/requests/%d/approvals", second), `{"reason":"ok"}`); code != http.StatusCreated {
		t.Fatalf("approval: %d", code)
	}
	e.clock.Add(73 * time.Hour)
	size = e.size(t)
	if code, body := e.post(t, aliceToken, fmt.Sprintf("/v1/requests/%d/approvals", second), `{"reason":"late"}`); code != http.StatusConflict || !strings.Contains(string(body), "expired") || e.size(t) != size {
		t.Errorf("approving an expired request: %d %s", code, body)
	}
	if code, a := e.request(t, releaseToken, fmt.Sprintf("/v1/requests/%d", second), ""); code != http.StatusOK || a.Request.State != promotion.RequestExpired {
		t.Errorf("expired request: %d %+v", code, a.Request)
	}
	if third := open(); third == second {
		t.Error("an expired request was returned as pending")
	}
}
