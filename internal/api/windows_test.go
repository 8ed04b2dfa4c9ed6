package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/policies"
)

func windowRules(t *testing.T, cfg *config.Config) map[string]promotion.WindowRule {
	t.Helper()
	rules, err := app.WindowRules(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return rules
}

// TestPromotionFreeze: through HTTP, with the real policy and ledger, a
// promotion to a frozen prod is a 403 that says when prod opens again and
// writes nothing; an emergency promotion from freezeOverrideGroups is a
// 201; a revocation is not blocked.
func TestPromotionFreeze(t *testing.T) {
	e := newEnvWith(t, func(c *config.Config) {
		prod := &c.Stages[len(c.Stages)-1]
		prod.Windows = []config.Window{{Deny: "weekend freeze", TimeZone: "Europe/Berlin", From: "Fri 16:00", To: "Mon 08:00"}}
		prod.FreezeOverrideGroups = []string{"release"}
	}, policies.FS)
	for _, step := range []struct {
		token, stage string
		soak         time.Duration
	}{{pipelineToken, "dev", 0}, {pipelineToken, "test", 0}, {releaseToken, "stage", 2 * time.Hour}} {
		e.clock.Add(step.soak)
		if code, body := e.post(t, step.token, "/v1/promotions", promoteBody(e.sample.Image, step.stage)); code != http.StatusCreated {
			t.Fatalf("promote %s: %d %s", step.stage, code, body)
		}
	}
	e.clock.Add(123 * time.Hour) // Friday 6 November 2026, 18:00 in Berlin (CET)
	code, body := e.get(t, pipelineToken, "/v1/stages")
	var stages struct {
		Stages []promotion.StageView
	}
	if err := json.Unmarshal(body, &stages); code != http.StatusOK || err != nil || len(stages.Stages) != 4 {
		t.Fatalf("GET /v1/stages: %d %s", code, body)
	}
	if dev := stages.Stages[0]; dev.Name != "dev" || dev.Order != 0 || !dev.Open || dev.NextChange != nil || dev.Windows != 0 {
		t.Errorf("dev = %+v, want open for ever", dev)
	}
	if prod := stages.Stages[3]; prod.Name != "prod" || prod.Order != 3 || prod.Open || prod.ClosedBy != "weekend freeze" || prod.NextChange == nil ||
		!prod.NextChange.Equal(time.Date(2026, 11, 9, 7, 0, 0, 0, time.UTC)) || !slices.Equal(prod.FreezeOverrideGroups, []string{"release"}) {
		t.Errorf("prod = %+v, want closed by the weekend freeze until 2026-11-09T07:00:00Z", prod)
	}
	emergency := func(reason string) string {
		return fmt.Sprintf(`{"image":%q,"stage":"prod","reason":%q,"freezeOverride":true}`, e.sample.Image, reason)
	}
	tests := map[string]struct {
		token, body string
		code        int
		check       func(t *testing.T, body []byte)
	}{
		"plain promotion": {releaseToken, promoteBody(e.sample.Image, "prod"), http.StatusForbidden, func(t *testing.T, body []byte) {
			var got struct {
				Error, NextOpen, Window, Stage string
				OverrideGroups                 []string
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatal(err)
			}
			if got.NextOpen != "2026-11-09T07:00:00Z" || got.Window != "weekend freeze" || got.Stage != "prod" ||
				!slices.Equal(got.OverrideGroups, []string{"release"}) || !strings.Contains(got.Error, "stage prod is closed") {
				t.Errorf("answer = %s", body)
			}
		}},
		// An emergency by someone outside freezeOverrideGroups is a
		// request (freeze_test.go), which passes every other rule first:
		// the pipeline may not promote to prod at all.
		"emergency from a group that may not promote there": {pipelineToken, emergency("hotfix"), http.StatusForbidden, func(t *testing.T, body []byte) {
			if !strings.Contains(string(body), "release") || strings.Contains(string(body), `"request"`) {
				t.Errorf("answer = %s", body)
			}
		}},
		"emergency without a reason": {releaseToken, emergency(""), http.StatusBadRequest, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			size, cp := e.size(t), e.checkpoint(t)
			code, body := e.post(t, tc.token, "/v1/promotions", tc.body)
			if code != tc.code {
				t.Fatalf("%d %s, want %d", code, body, tc.code)
			}
			if tc.check != nil {
				tc.check(t, body)
			}
			if e.size(t) != size || e.checkpoint(t) != cp {
				t.Errorf("ledger changed: size %d → %d", size, e.size(t))
			}
		})
	}

	code, body = e.post(t, releaseToken, "/v1/promotions", emergency("INC-7: checkout down"))
	if code != http.StatusCreated {
		t.Fatalf("emergency promotion: %d %s", code, body)
	}
	var rc struct {
		Entry struct{ Digest string }
	}
	if err := json.Unmarshal(body, &rc); err != nil {
		t.Fatal(err)
	}
	rev := fmt.Sprintf(`{"digest":%q,"stage":"prod","reason":"CVE-1"}`, rc.Entry.Digest)
	if code, body := e.post(t, releaseToken, "/v1/revocations", rev); code != http.StatusCreated {
		t.Fatalf("revocation during the freeze: %d %s", code, body)
	}
}
