package hostile

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// review wraps a pod running images in an AdmissionReview v1 with uid.
func review(uid string, images ...string) string {
	var cs []map[string]any
	for i, img := range images {
		cs = append(cs, map[string]any{"name": fmt.Sprintf("c%d", i), "image": img})
	}
	pod := map[string]any{"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "web", "namespace": "shop"}, "spec": map[string]any{"containers": cs}}
	req := map[string]any{"uid": uid, "kind": map[string]any{"group": "", "version": "v1", "kind": "Pod"},
		"resource": map[string]any{"group": "", "version": "v1", "resource": "pods"},
		"name":     "web", "namespace": "shop", "operation": "CREATE",
		"userInfo": map[string]any{"username": "mallory"}, "object": pod}
	b, _ := json.Marshal(map[string]any{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": req})
	return string(b)
}

func nested(open, close string, n int) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

// hostileCase is one request. Webhook cases (path under /admission/) must
// get HTTP 200 and an AdmissionReview that denies with a message containing
// deny; API cases get status and a JSON {"error":...} body.
type hostileCase struct {
	method      string
	path        string
	token       string // "" means the valid token; "-" none
	contentType string
	body        any
	status      int
	deny        string
}

// TestHostileInputs sends requests no honest client sends, against a real
// server whose ledger already holds one promotion. Each gets the documented
// error and none changes the ledger.
func TestHostileInputs(t *testing.T) {
	s := start(t)
	_, promoted := s.promote("dev")
	reg := s.registry
	app := reg + "/sample/app"
	other := "sha256:" + strings.Repeat("e", 64)
	upper := strings.ToUpper(promoted[len("sha256:"):])
	big := `{"image":"` + strings.Repeat("a", 10<<20) + `"}`
	bigReview := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"` + strings.Repeat("u", 10<<20) + `"}}`
	promo := func(image, stage string) map[string]any {
		return map[string]any{"image": image, "stage": stage, "reason": "r"}
	}
	revo := func(digest, repo, stage string) map[string]any {
		return map[string]any{"digest": digest, "repository": repo, "stage": stage, "reason": "r"}
	}
	const P, R, J = "/v1/promotions", "/v1/revocations", "application/json"
	const W = "/admission/validate/dev"
	okReview := review("u1", app+"@"+promoted)

	cases := map[string]hostileCase{
		// The promotion API.
		"truncated JSON":                       {body: `{"image":"` + app, status: 400},
		"deeply nested JSON":                   {body: `{"image":"x","stage":"dev","reason":"r","evidence":` + nested(`{"a":`, `}`, 200) + `}`, status: 400},
		"deeply nested arrays":                 {body: `{"evidence":{"a":` + nested("[", "]", 5000) + `}}`, status: 400},
		"duplicate key":                        {body: `{"image":"` + app + `:1.0","stage":"dev","stage":"prod","reason":"r"}`, status: 400},
		"key differing only in case":           {body: `{"image":"` + app + `:1.0","stage":"dev","Stage":"prod","reason":"r"}`, status: 400},
		"key with a unicode fold (ſtage)":      {body: `{"image":"` + app + `:1.0","ſtage":"dev","reason":"r"}`, status: 400},
		"unknown field":                        {body: `{"image":"` + app + `:1.0","stage":"dev","reason":"r","admin":true}`, status: 400},
		"trailing data":                        {body: `{"image":"` + app + `:1.0","stage":"dev","reason":"r"}{}`, status: 400},
		"empty body":                           {body: ``, status: 400},
		"JSON array":                           {body: `[]`, status: 400},
		"JSON null":                            {body: `null`, status: 400},
		"wrong type for image":                 {body: `{"image":42,"stage":"dev"}`, status: 400},
		"huge number":                          {body: `{"image":"` + app + `:1.0","stage":"dev","reason":"r","evidence":{"n":1e999}}`, status: 400},
		"invalid UTF-8":                        {body: "{\"image\":\"\xff\xfe\",\"stage\":\"dev\",\"reason\":\"r\"}", status: 400},
		"NUL byte in image":                    {body: promo(app+":1.0\x00evil", "dev"), status: 400},
		"invalid digest":                       {body: promo(app+"@sha256:abc", "dev"), status: 400},
		"mixed-case digest":                    {body: promo(app+"@sha256:"+upper, "dev"), status: 400},
		"sha512 digest":                        {body: promo(app+"@sha512:"+strings.Repeat("a", 128), "dev"), status: 400},
		"tag and digest disagree":              {body: promo(app+":1.0@"+other, "test"), status: 404},
		"repository with ..":                   {body: promo(reg+"/sample/../app:1.0", "dev"), status: 400},
		"repository with a unicode confusable": {body: promo(reg+"/sample/аpp:1.0", "dev"), status: 400},
		"stage with a path separator":          {body: promo(app+":1.0", "../prod"), status: 400},
		"stage with a control character":       {body: promo(app+":1.0", "dev\n"), status: 400},
		"stage with a NUL byte":                {body: promo(app+":1.0", "prod\x00"), status: 400},
		"stage with a unicode confusable":      {body: promo(app+":1.0", "prоd"), status: 400},
		"stage * on a promotion":               {body: promo(app+":1.0", "*"), status: 400},
		"10 MiB body":                          {body: big, status: 413},
		"text/plain content type":              {contentType: "text/plain", body: promo(app+":1.0", "test"), status: 415},
		"form content type":                    {contentType: "application/x-www-form-urlencoded", body: "image=x", status: 415},
		"malformed content type":               {contentType: "application/json; charset", body: promo(app+":1.0", "test"), status: 415},
		"no token":                             {token: "-", body: promo(app+":1.0", "test"), status: 401},
		"wrong token":                          {token: "nope", body: promo(app+":1.0", "test"), status: 401},
		"basic auth":                           {token: "basic", body: promo(app+":1.0", "test"), status: 401},
		"GET on promotions":                    {method: "GET", path: P, status: 405},
		"PUT on promotions":                    {method: "PUT", path: P, body: promo(app+":1.0", "test"), status: 405},
		"DELETE on the ledger":                 {method: "DELETE", path: "/v1/ledger/entries", status: 405},
		"unknown API path":                     {method: "GET", path: "/v1/admin", status: 404},
		// Revocations.
		"revocation with a mixed-case digest":    {path: R, body: revo("sha256:"+upper, app, "dev"), status: 400},
		"revocation with no digest algorithm":    {path: R, body: revo(promoted[len("sha256:"):], app, "dev"), status: 400},
		"revocation with a path-separator stage": {path: R, body: revo(promoted, app, "dev/../prod"), status: 400},
		"revocation with a duplicate digest":     {path: R, body: `{"digest":"` + other + `","digest":"` + promoted + `","stage":"dev","reason":"r"}`, status: 400},
		"revocation of a digest never promoted":  {path: R, body: revo(other, app, "dev"), status: 409},
		"revocation with an unknown stage":       {path: R, body: revo(promoted, app, "qa"), status: 400},
		// Query parameters of the ledger endpoints.
		"negative start":               {method: "GET", path: "/v1/ledger/entries?start=-1", status: 400},
		"non-numeric start":            {method: "GET", path: "/v1/ledger/entries?start=abc", status: 400},
		"overflowing start":            {method: "GET", path: "/v1/ledger/entries?start=99999999999999999999999", status: 400},
		"start beyond the ledger":      {method: "GET", path: "/v1/ledger/entries?start=1000000", status: 400},
		"huge limit":                   {method: "GET", path: "/v1/ledger/entries?limit=1000000000", status: 400},
		"zero limit":                   {method: "GET", path: "/v1/ledger/entries?limit=0", status: 400},
		"float limit":                  {method: "GET", path: "/v1/ledger/entries?limit=1e3", status: 400},
		"inclusion without parameters": {method: "GET", path: "/v1/ledger/proof/inclusion", status: 400},
		"inclusion beyond the size":    {method: "GET", path: "/v1/ledger/proof/inclusion?index=5&size=1", status: 400},
		"inclusion, huge size":         {method: "GET", path: "/v1/ledger/proof/inclusion?index=0&size=9223372036854775807", status: 400},
		"inclusion, negative index":    {method: "GET", path: "/v1/ledger/proof/inclusion?index=-1&size=1", status: 400},
		"consistency backwards":        {method: "GET", path: "/v1/ledger/proof/consistency?from=2&to=1", status: 400},
		"consistency beyond the size":  {method: "GET", path: "/v1/ledger/proof/consistency?from=0&to=999999", status: 400},
		"image key that is not there":  {method: "GET", path: "/v1/images/..%2F..%2Fetc%2Fpasswd", status: 404},
		// The webhook: always 200 and a denial with a message.
		"review: truncated":               {path: W, body: okReview[:len(okReview)/2], deny: "could not decide"},
		"review: deeply nested":           {path: W, body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"x","object":` + nested("[", "]", 20000) + `}}`, deny: "could not decide"},
		"review: duplicate request":       {path: W, body: strings.Replace(okReview, `"request":`, `"request":{"uid":"a"},"request":`, 1), deny: "duplicate field"},
		"review: wrong kind":              {path: W, body: strings.Replace(okReview, `"kind":"AdmissionReview"`, `"kind":"AdmissionReviewList"`, 1), deny: "want admission.k8s.io/v1 AdmissionReview"},
		"review: v1beta1":                 {path: W, body: strings.Replace(okReview, "admission.k8s.io/v1", "admission.k8s.io/v1beta1", 1), deny: "admissionReviewVersions"},
		"review: no uid":                  {path: W, body: review("", app+"@"+promoted), deny: "no uid"},
		"review: no request":              {path: W, body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, deny: "no request"},
		"review: 10 MiB":                  {path: W, body: bigReview, deny: "larger than"},
		"review: wrong content type":      {path: W, contentType: "application/yaml", body: okReview, deny: "content type"},
		"review: stage with a newline":    {path: "/admission/validate/dev%0A", body: okReview, deny: "unknown stage"},
		"review: stage with a slash":      {path: "/admission/validate/dev%2Fprod", body: okReview, deny: "unknown stage"},
		"review: stage with ..":           {path: "/admission/validate/..%2Fdev", body: okReview, deny: "unknown stage"},
		"review: confusable stage":        {path: "/admission/validate/d%D0%B5v", body: okReview, deny: "unknown stage"},
		"review: mixed-case digest":       {path: W, body: review("u2", app+"@sha256:"+upper), deny: "denied"},
		"review: tag and digest disagree": {path: W, body: review("u3", app+":1.0@"+other), deny: "not promoted"},
		"review: NUL in image":            {path: W, body: review("u4", app+"@"+promoted+"\x00"), deny: "denied"},
		// The webhook decodes only the fields it decides on (the API server
		// has validated the rest), so the huge number goes where it reads.
		"review: huge number": {path: W, body: strings.Replace(okReview, `"name":"web","namespace":"shop"},`, `"name":1e999,"namespace":"shop"},`, 1), deny: "cannot decode"},
		// A pod spec is checked whatever kind carries it (issue 11).
		"review: pod spec in another kind": {path: W, body: strings.Replace(review("u5", app+"@"+other), `"group":"","kind":"Pod","version":"v1"},"name"`, `"group":"example.com","kind":"Widget","version":"v1"},"name"`, 1), deny: "not promoted"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d hostile cases", len(cases))
	}
	before := s.size()
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			method, path, ct := tc.method, tc.path, tc.contentType
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = P
			}
			if ct == "" && tc.body != nil {
				ct = J
			}
			token := s.token
			switch tc.token {
			case "-":
				token = ""
			case "":
			default:
				token = tc.token
			}
			if tc.token == "basic" {
				token = ""
			}
			code, body := s.doAuth(method, path, token, tc.token == "basic", ct, tc.body)
			if strings.HasPrefix(path, "/admission/") {
				checkDenied(t, code, body, tc.deny)
			} else {
				checkAPIError(t, code, body, tc.status)
			}
			if got := s.size(); got != before {
				t.Fatalf("ledger size %d after the request, %d before", got, before)
			}
		})
	}
	// The genuine review is admitted: the denials above are not blanket.
	code, body := s.do(http.MethodPost, W, "", J, okReview)
	var out struct {
		Response struct {
			UID     string `json:"uid"`
			Allowed bool   `json:"allowed"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &out); code != 200 || err != nil || !out.Response.Allowed || out.Response.UID != "u1" {
		t.Fatalf("genuine review of a promoted digest: HTTP %d %s", code, body)
	}
}

func checkAPIError(t *testing.T, code int, body []byte, want int) {
	t.Helper()
	if code != want {
		t.Fatalf("HTTP %d, want %d: %.300s", code, want, body)
	}
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
		t.Fatalf("HTTP %d without a JSON error body: %.300s", code, body)
	}
}

func checkDenied(t *testing.T, code int, body []byte, msg string) {
	t.Helper()
	if code != http.StatusOK {
		t.Fatalf("webhook answered HTTP %d, want 200: %.300s", code, body)
	}
	var out struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Response   *struct {
			Allowed bool `json:"allowed"`
			Status  struct {
				Message string `json:"message"`
			} `json:"status"`
		} `json:"response"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.Response == nil || out.Kind != "AdmissionReview" || out.APIVersion != "admission.k8s.io/v1" {
		t.Fatalf("webhook answer is not an AdmissionReview v1: %v: %.300s", err, body)
	}
	if out.Response.Allowed {
		t.Fatalf("webhook allowed: %.300s", body)
	}
	if !strings.Contains(out.Response.Status.Message, msg) {
		t.Fatalf("denial %q does not mention %q", out.Response.Status.Message, msg)
	}
}
