package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

type oneToken struct{}

func (oneToken) Authenticate(r *http.Request) (policy.Identity, error) {
	if r.Header.Get("Authorization") == "Bearer good" {
		return policy.Identity{Subject: "ci", Groups: []string{"pipeline"}, Method: "token"}, nil
	}
	return policy.Identity{}, errNoSession
}

// emptyLedger is a ledger with no entries, for the tests of sessions.
type emptyLedger struct{ Ledger }

func (emptyLedger) Size() (uint64, error) { return 0, nil }
func (emptyLedger) EntriesPage(uint64, uint64, int) ([]ledger.Entry, error) {
	return nil, nil
}

func newTestServer(t testing.TB, c *clock, api http.Handler, opts ...Option) *Server {
	t.Helper()
	s, err := New(emptyLedger{}, oneToken{}, api, []string{"dev", "prod"}, Keys{}, append([]Option{WithClock(c.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// signIn signs in through the handlers and returns the session cookie.
func signIn(t testing.TB, h http.Handler) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://sg/ui/signin", nil))
	var signin *http.Cookie
	for _, c := range rec.Result().Cookies() {
		if c.Name == signinCookie {
			signin = c
		}
	}
	if signin == nil {
		t.Fatal("the sign-in form set no cookie")
	}
	form := url.Values{"csrf": {signin.Value}, "token": {"good"}}
	req := httptest.NewRequest(http.MethodPost, "https://sg/ui/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(signin)
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == sessionCookie && c.Value != "" {
			return c
		}
	}
	t.Fatalf("sign-in: %d, no session cookie", rec.Code)
	return nil
}

// TestSessionExpires: with the clock past the session's lifetime, its
// cookie opens no page and reaches no action, though it was never
// signed out.
func TestSessionExpires(t *testing.T) {
	c := &clock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	var calls atomic.Int32
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1); w.WriteHeader(201) })
	s := newTestServer(t, c, api, WithSessionTTL(15*time.Minute))
	mux := http.NewServeMux()
	s.Register(mux)
	cookie := signIn(t, mux)
	get := func() int {
		req := httptest.NewRequest(http.MethodGet, "https://sg/ui/requests", nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := get(); code != http.StatusOK {
		t.Fatalf("within the lifetime: %d, want 200", code)
	}
	c.t = c.t.Add(15 * time.Minute)
	if code := get(); code != http.StatusSeeOther {
		t.Fatalf("at the end of the lifetime: %d, want 303 to sign-in", code)
	}
	form := url.Values{"digest": {"sha256:" + strings.Repeat("a", 64)}, "stage": {"dev"}, "reason": {"x"}}
	req := httptest.NewRequest(http.MethodPost, "https://sg/ui/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || calls.Load() != 0 {
		t.Fatalf("revoke with an expired session: %d and %d API calls, want 401 and none", rec.Code, calls.Load())
	}
	if n := s.sessions.len(); n != 0 {
		t.Errorf("%d sessions held after expiry, want 0", n)
	}
}

// TestSessionBounds: one identity signing in over and over keeps at most
// maxSessionsPerSubject sessions, and a full store refuses a new one
// instead of evicting another person's.
func TestSessionBounds(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	st := newSessions(c.now, time.Hour, 20)
	first, _, err := st.create(policy.Identity{Subject: "loop"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		c.t = c.t.Add(time.Second)
		if _, _, err := st.create(policy.Identity{Subject: "loop"}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if n := st.len(); n != maxSessionsPerSubject {
		t.Fatalf("%d sessions of one subject, want %d", n, maxSessionsPerSubject)
	}
	if _, err := st.get(hashOf(first)); err == nil {
		t.Error("the oldest session of the subject survived")
	}
	for i := range 4 {
		if _, _, err := st.create(policy.Identity{Subject: string(rune('a' + i))}, ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := st.create(policy.Identity{Subject: "z"}, ""); err != errFull {
		t.Fatalf("sign-in to a full store: %v, want %v", err, errFull)
	}
}

func TestSafeNext(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/image/x":          "/ui/image/x",
		"https://evil.example": "/ui/",
		"//evil.example/ui/":   "/ui/",
		"/ui/\\evil":           "/ui/",
		"/v1/promotions":       "/ui/",
		"":                     "/ui/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestActionIsTheSessionsIdentity: a revoke from the page reaches the API
// as the signed-in identity, with the CSRF token checked first.
func TestActionIsTheSessionsIdentity(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	var got policy.Identity
	var body string
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = apiIdentity(r)
		b := new(strings.Builder)
		_, _ = io.Copy(b, r.Body)
		body = b.String()
		w.WriteHeader(http.StatusCreated)
	})
	s := newTestServer(t, c, api)
	mux := http.NewServeMux()
	s.Register(mux)
	cookie := signIn(t, mux)
	csrf := ""
	for _, ss := range s.sessions.byKey {
		csrf = ss.csrf
	}
	form := url.Values{"csrf": {csrf}, "digest": {"sha256:" + strings.Repeat("a", 64)}, "stage": {"dev"}, "reason": {"bad build"}}
	req := httptest.NewRequest(http.MethodPost, "https://sg/ui/revoke", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, req)
	if rec.Code != http.StatusSeeOther {
		t.Fatalf("revoke: %d, want 303", rec.Code)
	}
	if got.Subject != "ci" || len(got.Groups) != 1 {
		t.Errorf("the API saw %+v, want the session's identity ci (pipeline)", got)
	}
	if !strings.Contains(body, `"reason":"bad build"`) || !strings.Contains(body, `"stage":"dev"`) {
		t.Errorf("the API got %s", body)
	}
}

func apiIdentity(r *http.Request) (policy.Identity, bool) { return api.Authenticated(r.Context()) }
