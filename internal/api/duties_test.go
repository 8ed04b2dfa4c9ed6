package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// promoteToProd takes the sample image through every stage of the default
// config, soaking on the fake clock, and returns its prod entry.
func (e *env) promoteToProd(t *testing.T) ledger.Entry {
	t.Helper()
	var rc ledger.Receipt
	for _, step := range []struct {
		token, stage string
		soak         time.Duration
	}{{pipelineToken, "dev", 0}, {pipelineToken, "test", 0}, {releaseToken, "stage", 2 * time.Hour}, {releaseToken, "prod", 25 * time.Hour}} {
		e.clock.Add(step.soak)
		code, body := e.post(t, step.token, "/v1/promotions", promoteBody(e.sample.Image, step.stage))
		if code != http.StatusCreated {
			t.Fatalf("promote %s: %d %s", step.stage, code, body)
		}
		if err := json.Unmarshal(body, &rc); err != nil {
			t.Fatal(err)
		}
	}
	return rc.Entry
}

func (e *env) checkpoint(t *testing.T) string {
	t.Helper()
	cp, err := e.ledger.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// TestRevokeForbidden is the attack through HTTP: any authenticated token
// used to be able to revoke prod. A token with no groups, or with groups
// that may not revoke there, gets 403 naming the groups that may, and the
// ledger keeps its size and checkpoint; release, which promotes to prod,
// may revoke it.
func TestRevokeForbidden(t *testing.T) {
	e := newEnv(t)
	prod := e.promoteToProd(t)
	rev := func(stage string) string {
		return fmt.Sprintf(`{"digest":%q,"stage":%q,"reason":"I can"}`, prod.Digest, stage)
	}
	tests := map[string]struct {
		token, stage string
		groups       []string
	}{
		"no groups revoking prod":        {nogroupsToken, "prod", []string{"release"}},
		"no groups revoking dev":         {nogroupsToken, "dev", []string{"pipeline"}},
		"visitor revoking prod":          {outsiderToken, "prod", []string{"release"}},
		"pipeline revoking prod":         {pipelineToken, "prod", []string{"release"}},
		"pipeline revoking all":          {pipelineToken, "*", []string{}},
		"no groups revoking all":         {nogroupsToken, "*", []string{}},
		"release revoking the dev stage": {releaseToken, "dev", []string{"pipeline"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			size, cp := e.size(t), e.checkpoint(t)
			code, body := e.post(t, tc.token, "/v1/revocations", rev(tc.stage))
			var got struct {
				Error         string   `json:"error"`
				AllowedGroups []string `json:"allowedGroups"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("%d %s: %v", code, body, err)
			}
			if code != http.StatusForbidden || !slices.Equal(got.AllowedGroups, tc.groups) || got.AllowedGroups == nil {
				t.Fatalf("%d %s, want 403 with allowedGroups %q", code, body, tc.groups)
			}
			for _, g := range tc.groups {
				if !strings.Contains(got.Error, g) {
					t.Errorf("error %q does not name group %q", got.Error, g)
				}
			}
			if n := e.size(t); n != size {
				t.Errorf("ledger size %d after a refused revocation, want %d", n, size)
			}
			if c := e.checkpoint(t); c != cp {
				t.Errorf("checkpoint changed after a refused revocation")
			}
		})
	}
	if code, body := e.post(t, releaseToken, "/v1/revocations", rev("prod")); code != http.StatusCreated {
		t.Fatalf("release revoking prod: %d %s", code, body)
	}
	if st, _, err := e.ledger.State(prod.Digest, "prod"); err != nil || !st.Revoked {
		t.Fatalf("prod state after release revoked it: %+v %v", st, err)
	}
}

// TestStickyRevocation through HTTP: a pipeline re-run of a revoked digest
// gets 403 naming the revocation; an override from a group that may not
// gets 403 and writes nothing; the pipeline's own override (dev's override
// groups default to its revoke groups) is 201, verifies, and shows in the
// image's history.
func TestStickyRevocation(t *testing.T) {
	e := newEnv(t)
	code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
	if code != http.StatusCreated {
		t.Fatalf("promote: %d %s", code, body)
	}
	var rc ledger.Receipt
	_ = json.Unmarshal(body, &rc)
	code, body = e.post(t, pipelineToken, "/v1/revocations", fmt.Sprintf(`{"digest":%q,"stage":"dev","reason":"CVE-2026-7"}`, rc.Entry.Digest))
	if code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	var rv ledger.Receipt
	_ = json.Unmarshal(body, &rv)
	size, cp := e.size(t), e.checkpoint(t)

	code, body = e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
	var refused struct {
		Error      string `json:"error"`
		Revocation struct {
			LedgerIndex uint64    `json:"ledgerIndex"`
			By          string    `json:"by"`
			At          time.Time `json:"at"`
			Reason      string    `json:"reason"`
			Stage       string    `json:"stage"`
		} `json:"revocation"`
		OverrideGroups []string `json:"overrideGroups"`
	}
	if err := json.Unmarshal(body, &refused); err != nil || code != http.StatusForbidden {
		t.Fatalf("re-run: %d %s (%v), want 403", code, body, err)
	}
	if r := refused.Revocation; r.LedgerIndex != rv.Entry.Index || r.By != "ci" || r.Reason != "CVE-2026-7" || !r.At.Equal(rv.Entry.Time) || r.Stage != "dev" ||
		!slices.Equal(refused.OverrideGroups, []string{"pipeline"}) {
		t.Errorf("re-run answer = %s, want the revocation at %d", body, rv.Entry.Index)
	}

	override := fmt.Sprintf(`{"image":%q,"stage":"dev","reason":"false positive","overrideRevocation":true}`, e.sample.Image)
	for _, token := range []string{outsiderToken, nogroupsToken, releaseToken} {
		if code, body = e.post(t, token, "/v1/promotions", override); code != http.StatusForbidden || !strings.Contains(string(body), `"allowedGroups"`) {
			t.Errorf("override from a group that may not: %d %s, want 403 with allowedGroups", code, body)
		}
	}
	if code, body = e.post(t, pipelineToken, "/v1/promotions", fmt.Sprintf(`{"image":%q,"stage":"dev","overrideRevocation":true}`, e.sample.Image)); code != http.StatusBadRequest {
		t.Errorf("override without a reason: %d %s, want 400", code, body)
	}
	if n, c := e.size(t), e.checkpoint(t); n != size || c != cp {
		t.Fatalf("refused promotions changed the ledger: size %d, want %d", n, size)
	}

	code, body = e.post(t, pipelineToken, "/v1/promotions", override)
	if code != http.StatusCreated {
		t.Fatalf("override: %d %s", code, body)
	}
	var ov ledger.Receipt
	_ = json.Unmarshal(body, &ov)
	if ov.Entry.OverridesRevocation == nil || *ov.Entry.OverridesRevocation != rv.Entry.Index {
		t.Errorf("override entry = %+v, want overridesRevocation %d", ov.Entry, rv.Entry.Index)
	}
	lv, _ := ledgertestVerifier(e)
	if err := ledger.VerifyReceipt(ov, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Errorf("override receipt does not verify: %v", err)
	}
	code, body = e.get(t, outsiderToken, "/v1/images/"+rc.Entry.Digest)
	if code != http.StatusOK || !strings.Contains(string(body), fmt.Sprintf(`"overridesRevocation": %d`, rv.Entry.Index)) {
		t.Errorf("history: %d %s, want the override shown", code, body)
	}
}
