package api_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// TestPromotionSets: POST /v1/promotion-sets promotes every image or none,
// with the real policy, registry and ledger; bad input changes nothing.
func TestPromotionSets(t *testing.T) {
	e := newEnv(t)
	body := func(images ...string) string {
		b, _ := json.Marshal(map[string]any{"images": images, "stage": "dev", "reason": "release 7"})
		return string(b)
	}
	missing := e.host + "/sample/config:does-not-exist"

	refusals := map[string]struct {
		token, body string
		status      int
		wantIn      string
	}{
		"no token":             {body: body(e.sample.Image, e.sample.Index), status: http.StatusUnauthorized},
		"one image missing":    {token: pipelineToken, body: body(e.sample.Image, missing), status: http.StatusNotFound, wantIn: "sample/config:does-not-exist"},
		"an unknown field":     {token: pipelineToken, body: `{"images":["` + e.sample.Image + `"],"stage":"dev","image":"x"}`, status: http.StatusBadRequest},
		"no images":            {token: pipelineToken, body: `{"images":[],"stage":"dev"}`, status: http.StatusBadRequest, wantIn: "images are required"},
		"the same image twice": {token: pipelineToken, body: body(e.sample.Image, e.sample.Image), status: http.StatusBadRequest, wantIn: "same digest"},
		"a stage the token may not promote to": {token: pipelineToken, status: http.StatusForbidden,
			body: strings.Replace(body(e.sample.Image, e.sample.Index), `"dev"`, `"prod"`, 1)},
	}
	for name, tc := range refusals {
		t.Run(name, func(t *testing.T) {
			before := e.size(t)
			status, out := e.post(t, tc.token, "/v1/promotion-sets", tc.body)
			if status != tc.status || !strings.Contains(string(out), tc.wantIn) {
				t.Fatalf("status %d %s, want %d naming %q", status, out, tc.status, tc.wantIn)
			}
			if after := e.size(t); after != before {
				t.Fatalf("ledger grew from %d to %d", before, after)
			}
		})
	}

	status, out := e.post(t, pipelineToken, "/v1/promotion-sets", body(e.sample.Image, e.sample.Index))
	if status != http.StatusCreated {
		t.Fatalf("status %d %s, want 201", status, out)
	}
	var sr ledger.SetReceipt
	if err := json.Unmarshal(out, &sr); err != nil {
		t.Fatal(err)
	}
	if len(sr.Members) != 2 || sr.Stage != "dev" {
		t.Fatalf("receipt %s, want two members in dev", out)
	}
	if err := ledger.VerifySetReceipt(sr, e.logV.(note.Verifier), signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("set receipt does not verify: %v", err)
	}
	size := e.size(t)
	status, again := e.post(t, pipelineToken, "/v1/promotion-sets", body(e.sample.Image, e.sample.Index))
	if status != http.StatusOK || e.size(t) != size {
		t.Fatalf("retry: status %d, size %d -> %d; want 200 and nothing recorded", status, size, e.size(t))
	}
	var sr2 ledger.SetReceipt
	if err := json.Unmarshal(again, &sr2); err != nil || sr2.Members[1] != sr.Members[1] {
		t.Fatalf("retry answered %s, want the same members", again)
	}
	if status, _ := e.get(t, pipelineToken, "/v1/promotion-sets"); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", status)
	}
}
