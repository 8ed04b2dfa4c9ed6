package web

import (
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostile: each request a browser (or an attacker's page, or a
// stolen cookie) could send that must be refused is refused, with a
// clear answer, and writes nothing to the ledger.
func TestHostile(t *testing.T) {
	in := start(t)
	digest := in.promote(t, "hostile/app", "dev")
	before := in.ledgerSize(t)

	ci := in.client(t)
	ci.signIn(in.ci)
	csrf := ci.csrf("/ui/image/" + digest)
	revoke := func(token string) url.Values {
		return url.Values{"csrf": {token}, "digest": {digest}, "stage": {"dev"}, "reason": {"hostile"}}
	}
	anon := in.client(t)
	wrong := in.client(t)
	wrongForm := url.Values{"csrf": {wrong.csrf("/ui/signin")}, "token": {"sg_wrong"}}
	forged := in.client(t)
	u, _ := url.Parse(in.sg.URL)
	forged.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-stagegate-session", Value: "AAAAforgedAAAAforgedAAAAforgedAAAAforgedAAA", Path: "/"}})

	tests := map[string]struct {
		b          *client
		method     string
		path       string
		form       url.Values
		header     []string
		wantStatus int
		wantIn     string // in the body, or the Location
	}{
		"no session: page redirects to sign-in": {b: anon, method: "GET", path: "/ui/",
			wantStatus: http.StatusSeeOther, wantIn: "/ui/signin?next=%2Fui%2F"},
		"no session: data is 401": {b: anon, method: "GET", path: "/ui/api/entries",
			wantStatus: http.StatusUnauthorized, wantIn: "no session"},
		"no session: receipt is 401": {b: anon, method: "GET", path: "/ui/receipt/0",
			wantStatus: http.StatusUnauthorized, wantIn: "no session"},
		"no session: revoke is 401": {b: anon, method: "POST", path: "/ui/revoke", form: revoke(csrf),
			wantStatus: http.StatusUnauthorized, wantIn: "no session"},
		"forged cookie: page redirects to sign-in": {b: forged, method: "GET", path: "/ui/ledger",
			wantStatus: http.StatusSeeOther, wantIn: "/ui/signin"},
		"forged cookie: revoke is 401": {b: forged, method: "POST", path: "/ui/revoke", form: revoke(csrf),
			wantStatus: http.StatusUnauthorized, wantIn: "no session"},
		"missing CSRF token": {b: ci, method: "POST", path: "/ui/revoke", form: revoke(""),
			wantStatus: http.StatusForbidden, wantIn: "CSRF"},
		"wrong CSRF token": {b: ci, method: "POST", path: "/ui/revoke", form: revoke(csrf[:len(csrf)-2] + "xx"),
			wantStatus: http.StatusForbidden, wantIn: "CSRF"},
		"cross-site post with the right token": {b: ci, method: "POST", path: "/ui/revoke", form: revoke(csrf),
			header: []string{"Sec-Fetch-Site", "cross-site", "Origin", "https://evil.example"}, wantStatus: http.StatusForbidden, wantIn: "cross-site"},
		"other origin with the right token": {b: ci, method: "POST", path: "/ui/revoke", form: revoke(csrf),
			header: []string{"Origin", "https://evil.example"}, wantStatus: http.StatusForbidden, wantIn: "cross-site"},
		"sign-in without the form's cookie": {b: anon, method: "POST", path: "/ui/signin",
			form: url.Values{"csrf": {"whatever"}, "token": {in.ci}}, wantStatus: http.StatusForbidden, wantIn: "expired or came from another site"},
		"sign-in with a wrong token": {b: wrong, method: "POST", path: "/ui/signin",
			form: wrongForm, wantStatus: http.StatusUnauthorized, wantIn: "invalid bearer token"},
		"open redirect after sign-in is refused": {b: ci, method: "GET", path: "/ui/signin?next=https://evil.example/",
			wantStatus: http.StatusSeeOther, wantIn: "/ui/"},
		"unknown request verb": {b: ci, method: "POST", path: "/ui/requests/1/delete", form: url.Values{"csrf": {csrf}},
			wantStatus: http.StatusNotFound},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			tt.b.t = t
			a := tt.b.do(tt.method, tt.path, tt.form, tt.header...)
			if a.status != tt.wantStatus {
				t.Fatalf("%s %s: %d, want %d:\n%s", tt.method, tt.path, a.status, tt.wantStatus, a.body)
			}
			if got := a.body + a.header.Get("Location"); !strings.Contains(got, tt.wantIn) {
				t.Errorf("%s %s: answer %q lacks %q", tt.method, tt.path, got, tt.wantIn)
			}
			if loc := a.header.Get("Location"); loc != "" && !strings.HasPrefix(loc, "/ui/") {
				t.Errorf("redirect to %q leaves the view", loc)
			}
			if got := in.ledgerSize(t); got != before {
				t.Errorf("ledger has %d entries after the request, %d before", got, before)
			}
		})
	}

	t.Run("revoke from a token without the group", func(t *testing.T) {
		m := in.client(t)
		m.signIn(in.mallory)
		a := m.do(http.MethodPost, "/ui/revoke", revoke(m.csrf("/ui/image/"+digest)))
		if a.status != http.StatusSeeOther {
			t.Fatalf("revoke: %d, want 303 back to the image:\n%s", a.status, a.body)
		}
		page := m.do(http.MethodGet, a.header.Get("Location"), nil)
		if !strings.Contains(page.body, "Not revoked (403)") {
			t.Errorf("the image page does not say the revocation was refused:\n%s", page.body)
		}
		if got := in.ledgerSize(t); got != before {
			t.Errorf("ledger has %d entries after mallory's revoke, %d before", got, before)
		}
	})

	t.Run("signed out, a copied cookie no longer works", func(t *testing.T) {
		b := in.client(t)
		b.signIn(in.ci)
		stolen := b.sessionCookie()
		if a := b.do(http.MethodGet, "/ui/", nil); a.status != http.StatusOK {
			t.Fatalf("board while signed in: %d", a.status)
		}
		token := b.csrf("/ui/")
		if a := b.do(http.MethodPost, "/ui/signout", url.Values{"csrf": {token}}); a.status != http.StatusSeeOther {
			t.Fatalf("sign-out: %d", a.status)
		}
		thief := in.client(t)
		thief.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-stagegate-session", Value: stolen, Path: "/"}})
		if a := thief.do(http.MethodGet, "/ui/", nil); a.status != http.StatusSeeOther {
			t.Errorf("board with the signed-out cookie: %d, want 303 to sign-in", a.status)
		}
		if a := thief.do(http.MethodPost, "/ui/revoke", revoke(token)); a.status != http.StatusUnauthorized {
			t.Errorf("revoke with the signed-out cookie: %d, want 401", a.status)
		}
		if got := in.ledgerSize(t); got != before {
			t.Errorf("ledger has %d entries, %d before", got, before)
		}
	})

	t.Run("headers", func(t *testing.T) {
		a := ci.do(http.MethodGet, "/ui/", nil)
		for h, want := range map[string]string{
			"Content-Security-Policy": "script-src 'self'", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
			"Cache-Control": "no-store",
		} {
			if got := a.header.Get(h); !strings.Contains(got, want) {
				t.Errorf("%s: %q, want it to contain %q", h, got, want)
			}
		}
		if csp := a.header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("CSP %q must forbid frames and inline script", csp)
		}
		if strings.Contains(a.body, "<script>") || strings.Contains(a.body, " onclick=") {
			t.Errorf("the board has inline script")
		}
	})
}

// TestReceiptDownload: the ledger page's receipt link gives a file that
// `stagegate receipt verify` accepts with the installation's public keys.
func TestReceiptDownload(t *testing.T) {
	in := start(t)
	in.promote(t, "receipt/app", "dev")
	b := in.client(t)
	b.signIn(in.ci)
	a := b.do(http.MethodGet, "/ui/receipt/0", nil)
	if a.status != http.StatusOK || !strings.Contains(a.header.Get("Content-Disposition"), `attachment; filename="receipt-0.json"`) {
		t.Fatalf("receipt: %d %q", a.status, a.header.Get("Content-Disposition"))
	}
	path := filepath.Join(t.TempDir(), "receipt-0.json")
	if err := os.WriteFile(path, []byte(a.body), 0o644); err != nil {
		t.Fatal(err)
	}
	out := in.sg.MustRun(t, "receipt", "verify", path, "--key", filepath.Join(in.sg.KeysDir, "cosign.pub"), "--log-key", filepath.Join(in.sg.KeysDir, "log.pub"))
	t.Logf("receipt verify: %s", out)
	if a := b.do(http.MethodGet, "/ui/receipt/99", nil); a.status != http.StatusNotFound {
		t.Errorf("receipt of an entry that does not exist: %d, want 404", a.status)
	}
}
