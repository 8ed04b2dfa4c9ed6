package web

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// TestSignInGuessing: a script without a token guesses tokens through the
// sign-in form, which takes one from anyone (its CSRF cookie is free to
// get). After the burst of failures its address is refused, the right
// token included (or a success would still tell a right guess), while
// another address signs in; the refusal says when to retry and ends
// with time.
func TestSignInGuessing(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	s := newTestServer(t, c, http.NotFoundHandler())
	mux := http.NewServeMux()
	s.Register(mux)
	try := func(remote, token string) *httptest.ResponseRecorder {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://sg/ui/signin", nil))
		var csrf *http.Cookie
		for _, ck := range rec.Result().Cookies() {
			if ck.Name == signinCookie {
				csrf = ck
			}
		}
		form := url.Values{"csrf": {csrf.Value}, "token": {token}}
		req := httptest.NewRequest(http.MethodPost, "https://sg/ui/signin", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.RemoteAddr = remote
		req.AddCookie(csrf)
		rec = httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec
	}
	const attacker = "192.0.2.7:40000"
	for i := range signinBurst {
		if rec := try(attacker, "guess"+string(rune('a'+i))); rec.Code != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d, want 401", i, rec.Code)
		}
	}
	for name, tt := range map[string]struct {
		remote, token string
		want          int
	}{
		"one more guess":                       {remote: attacker, token: "guess", want: http.StatusTooManyRequests},
		"the right token from the same host":   {remote: "192.0.2.7:40001", token: "good", want: http.StatusTooManyRequests},
		"the right token from another address": {remote: "198.51.100.1:1234", token: "good", want: http.StatusSeeOther},
	} {
		t.Run(name, func(t *testing.T) {
			rec := try(tt.remote, tt.token)
			if rec.Code != tt.want {
				t.Fatalf("%d, want %d: %s", rec.Code, tt.want, rec.Body)
			}
			if tt.want == http.StatusTooManyRequests {
				if rec.Header().Get("Retry-After") == "" || !strings.Contains(rec.Body.String(), "Too many failed sign-ins") {
					t.Errorf("refusal without Retry-After or reason: %v %s", rec.Header(), rec.Body)
				}
				for _, ck := range rec.Result().Cookies() {
					if ck.Name == sessionCookie && ck.Value != "" {
						t.Error("a throttled sign-in set a session cookie")
					}
				}
			}
		})
	}
	c.t = c.t.Add(signinEvery)
	if rec := try(attacker, "good"); rec.Code != http.StatusSeeOther {
		t.Fatalf("after %s: %d, want the right token to sign in", signinEvery, rec.Code)
	}
}
