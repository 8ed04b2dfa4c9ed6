package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/forward"
)

// Attack: a caller on the public API claims, in the header a follower
// uses on the peer port, to be the release manager. The API ignores the
// header: without a token it is 401, with the pipeline's token it acts as
// the pipeline (refused for prod), and nothing is written either way.
func TestForwardingHeaderIsIgnoredOnThePublicAPI(t *testing.T) {
	e := newEnv(t)
	forged := `{"subject":"release-manager","groups":["release"],"method":"token"}`
	for name, tc := range map[string]struct {
		token    string
		wantCode int
		wantBody string
	}{
		"no token":             {wantCode: http.StatusUnauthorized, wantBody: "authentication required"},
		"the pipeline's token": {token: pipelineToken, wantCode: http.StatusForbidden, wantBody: `requester \"ci\" (groups \"pipeline\") may not promote to stage \"prod\"`},
	} {
		t.Run(name, func(t *testing.T) {
			before := e.size(t)
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/v1/promotions", strings.NewReader(promoteBody(e.sample.Image, "prod")))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(forward.IdentityHeader, forged)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			code, body := do(t, req)
			if code != tc.wantCode || !strings.Contains(string(body), tc.wantBody) {
				t.Fatalf("%d %s, want %d with %q", code, body, tc.wantCode, tc.wantBody)

			}
			if e.size(t) != before {
				t.Fatal("the forged identity wrote to the ledger")
			}
		})
	}
}
