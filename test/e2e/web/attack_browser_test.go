package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserSwappedAnswer: a proxy between the browser and serve answers
// with entries that are each validly signed and in the tree, but are not
// what the page asked for. Each must show as failing, never "verified":
// another image's clean history on the page of an image, the ledger page
// with an entry left out, or a ledger page that stops short of the
// checkpoint (hiding the newest entries).
func TestBrowserSwappedAnswer(t *testing.T) {
	in := start(t)
	victim := in.promote(t, "swap/victim", "dev", "test")
	clean := in.promote(t, "swap/clean", "dev", "test")
	proxy := in.proxy(t)
	var mode atomic.Value
	mode.Store("")
	director := proxy.Director
	proxy.Director = func(r *http.Request) {
		director(r)
		if r.URL.Path == "/ui/api/entries" && mode.Load() == "swap" && r.URL.Query().Get("image") == victim {
			q := r.URL.Query()
			q.Set("image", clean)
			r.URL.RawQuery = q.Encode()
		}
	}
	proxy.ModifyResponse = func(r *http.Response) error {
		m := mode.Load().(string)
		if r.Request.URL.Path != "/ui/api/entries" || r.StatusCode != http.StatusOK || (m != "drop" && m != "short") {
			return nil
		}
		return rewriteJSON(r, func(ans map[string]any) {
			entries := ans["entries"].([]any)
			if m == "drop" {
				entries = append(entries[:1:1], entries[2:]...)
			} else {
				entries = entries[:len(entries)-1]
			}
			ans["entries"] = entries
		})
	}
	srv := httptest.NewTLSServer(proxy)
	t.Cleanup(srv.Close)
	ctx := newBrowser(t, srv.Certificate())
	signInPage(t, ctx, srv.URL, in.ci)

	for _, tt := range []struct {
		mode, path string
		wantOK     int
		wantBad    int
		wantMsg    string
	}{
		{mode: "", path: "/ui/image/" + victim, wantOK: 2},
		{mode: "swap", path: "/ui/image/" + victim, wantBad: 2, wantMsg: "is not in the history of"},
		{mode: "drop", path: "/ui/ledger", wantOK: 1, wantBad: 2, wantMsg: "answered where the ledger page wants entry 1"},
		{mode: "short", path: "/ui/ledger", wantOK: 3, wantMsg: "entries are hidden"},
	} {
		t.Run(tt.mode+tt.path, func(t *testing.T) {
			mode.Store(tt.mode)
			run(t, ctx, "open "+tt.path, chromedp.Navigate(srv.URL+tt.path))
			verdict, ok, bad := verified(t, ctx)
			wantVerdict := "ok"
			if tt.wantMsg != "" {
				wantVerdict = "failed"
			}
			if verdict != wantVerdict || ok != tt.wantOK || bad != tt.wantBad {
				t.Fatalf("%s through the proxy (%q): %q with %d verified and %d failing entries, want %q, %d and %d",
					tt.path, tt.mode, verdict, ok, bad, wantVerdict, tt.wantOK, tt.wantBad)
			}
			if tt.wantMsg == "" {
				return
			}
			text := get(t, ctx, "read the page", chromedp.Text(css(`main`)))
			alarm := get(t, ctx, "read the alarm", chromedp.Evaluate[string](`document.querySelector('#alarm').innerText`))
			if !strings.Contains(text+alarm, tt.wantMsg) {
				t.Errorf("the page says %q, the alarm %q; want %q", text, alarm, tt.wantMsg)
			}
		})
	}
}
