package ha

import (
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// browserOf is a browser at one replica: its client, no redirects
// followed, cookies given by hand (a cookie jar would share them between
// the replicas' ports on 127.0.0.1, and the test says which it sends).
func (h *ha) browserOf(i int) *http.Client {
	c := *h.clients[i]
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// webSignIn signs in on replica i with token and returns the session
// cookie.
func (h *ha) webSignIn(t *testing.T, i int, token string) *http.Cookie {
	t.Helper()
	c := h.browserOf(i)
	resp, err := c.Get(h.nodes[i].URL + "/ui/signin")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var signin *http.Cookie
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-stagegate-signin" {
			signin = ck
		}
	}
	if signin == nil {
		t.Fatalf("%s: the sign-in form set no cookie (%d)", h.ids[i], resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, h.nodes[i].URL+"/ui/signin",
		strings.NewReader(url.Values{"csrf": {signin.Value}, "token": {token}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(signin)
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "__Host-stagegate-session" && ck.Value != "" {
			if !ck.Secure || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode {
				t.Errorf("the session cookie is not Secure, HttpOnly, SameSite=Strict: %+v", ck)
			}
			return ck
		}
	}
	t.Fatalf("%s: sign-in answered %d and no session cookie", h.ids[i], resp.StatusCode)
	return nil
}

// webPage GETs path on replica i with the cookie: the page's body if it
// is signed in as subject, "" with a redirect to sign-in; anything else
// fails the test.
func (h *ha) webPage(t *testing.T, i int, path string, cookie *http.Cookie, subject string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.nodes[i].URL+path, nil)
	req.AddCookie(cookie)
	resp, err := h.browserOf(i).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch {
	case resp.StatusCode == http.StatusOK && strings.Contains(string(b), `<strong id="subject">`+subject+`</strong>`):
		return string(b)
	case resp.StatusCode == http.StatusSeeOther && strings.HasPrefix(resp.Header.Get("Location"), "/ui/signin"):
		return ""
	}
	t.Fatalf("%s %s: %d %s", h.ids[i], path, resp.StatusCode, b)
	return ""
}

// TestWebSessionAcrossReplicas: behind a Service a person's requests land
// on any replica. Signed in on sg-0, the session opens pages on sg-1 and
// sg-2 (which ask sg-0 over the peer port); signed out on sg-2, the
// cookie is refused by every replica. A cookie that names a host rather
// than a member is refused without that host being called.
func TestWebSessionAcrossReplicas(t *testing.T) {
	h := newHA(t, 3)
	const subject = "client-00"
	cookie := h.webSignIn(t, 0, h.tokens[0])
	for i := range h.nodes {
		if h.webPage(t, i, "/ui/ledger", cookie, subject) == "" {
			t.Fatalf("%s does not take the session signed in on %s", h.ids[i], h.ids[0])
		}
	}

	page := h.webPage(t, 2, "/ui/", cookie, subject)
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on %s's board", h.ids[2])
	}
	req, _ := http.NewRequest(http.MethodPost, h.nodes[2].URL+"/ui/signout", strings.NewReader(url.Values{"csrf": {m[1]}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(cookie)
	resp, err := h.browserOf(2).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out on %s: %d", h.ids[2], resp.StatusCode)
	}
	for i := range h.nodes {
		if h.webPage(t, i, "/ui/ledger", cookie, subject) != "" {
			t.Errorf("%s still takes the session signed out on %s", h.ids[i], h.ids[2])
		}
	}

	// A forged cookie naming a listener of the test's as its issuer.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var dialed atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dialed.Add(1)
			c.Close()
		}
	}()
	forged := &http.Cookie{Name: "__Host-stagegate-session",
		Value: base64.RawURLEncoding.EncodeToString([]byte(ln.Addr().String())) + "." + strings.Repeat("A", 43)}
	for i := range h.nodes {
		if h.webPage(t, i, "/ui/ledger", forged, subject) != "" {
			t.Errorf("%s takes a forged cookie", h.ids[i])
		}
	}
	if n := dialed.Load(); n != 0 {
		t.Errorf("a forged cookie made a replica connect to the host it named (%d connections)", n)
	}
}
