package web

import (
	"bytes"
	"context"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/stagegate/stagegate/internal/testutil/browser"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// artefacts is where the screenshots go: git-ignored, kept after the run
// for a person to look at (and the README's picture is one of them).
func artefacts(t *testing.T) string {
	dir := filepath.Join(framework.RepoRoot(t), "test", "e2e", "web", "artefacts")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newBrowser is a fresh headless Chromium. It accepts the test server's
// serving certificate (its key only, as if a CA it trusts had signed it).
func newBrowser(t *testing.T, cert *x509.Certificate) context.Context {
	ctx := browser.New(t, browser.TrustCert(cert))
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, actions...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get runs one action that answers a value.
func get[T any](t *testing.T, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func css(s string) chromedp.CSS { return chromedp.CSS(s) }

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := get(t, ctx, "screenshot "+name, chromedp.FullScreenshot(100))
	path := filepath.Join(artefacts(t), name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
}

// verified waits until the page has verified what it loaded and returns
// the verdict, the count of entries shown as verified and as failing.
func verified(t *testing.T, ctx context.Context) (verdict string, ok, bad int) {
	t.Helper()
	run(t, ctx, "wait for verification", chromedp.WaitReady(css(`body[data-verified]`)))
	verdict = get(t, ctx, "verdict", chromedp.Evaluate[string](`document.body.dataset.verified`))
	ok = get(t, ctx, "verified entries", chromedp.Evaluate[int](`document.querySelectorAll('li.entry.ok').length`))
	bad = get(t, ctx, "failing entries", chromedp.Evaluate[int](`document.querySelectorAll('li.entry.bad').length`))
	return verdict, ok, bad
}

func signInPage(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	run(t, ctx, "sign in",
		chromedp.Navigate(base+"/ui/"),
		chromedp.WaitVisible(css(`#token`)),
		// With the keyboard alone: the token field has the focus, and
		// Enter submits.
		chromedp.SendKeys(css(`#token`), token+"\r"),
		chromedp.WaitVisible(css(`#board`)))
}

// TestBrowserStory drives the web view in a real Chromium: sign in, the
// board with the sample promotions, an image whose every entry the page
// verifies, a revocation from the page shown on the board, and sign-out,
// after which the session no longer works.
func TestBrowserStory(t *testing.T) {
	in := start(t)
	app := in.promote(t, "story/app", "dev", "test", "prod") // prod: a pending request, which alice would approve
	api := in.promote(t, "story/api", "dev")
	ctx := newBrowser(t, in.servingCert(t))
	signInPage(t, ctx, in.sg.URL, in.ci)

	board := get(t, ctx, "read the board", chromedp.Text(css(`#board`)))
	for _, want := range []string{"story/app", "story/api", app[:19]} {
		if !strings.Contains(board, want) {
			t.Errorf("the board lacks %q:\n%s", want, board)
		}
	}
	screenshot(t, ctx, "board.png")

	// Keyboard: the first Tab reaches the skip link, the next ones the
	// navigation, in order.
	var focused []string
	for range 3 {
		run(t, ctx, "tab", chromedp.KeyEvent("\t"))
		focused = append(focused, get(t, ctx, "focus", chromedp.Evaluate[string](`document.activeElement.textContent.trim()`)))
	}
	if got := strings.Join(focused, "|"); got != "Skip to content|stagegate|Board" {
		t.Errorf("tab order %q", got)
	}

	// A phone: the page fits the screen's width; the board scrolls
	// inside its own box.
	run(t, ctx, "phone", chromedp.EmulateViewport(390, 844), chromedp.Reload(), chromedp.WaitVisible(css(`#board`)))
	if wide := get(t, ctx, "width", chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`)); wide {
		t.Errorf("the board is wider than a phone's screen")
	}
	screenshot(t, ctx, "board-phone.png")
	run(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))

	run(t, ctx, "open the image", chromedp.Navigate(in.sg.URL+"/ui/image/"+in.reg.Repo("story/app")))
	verdict, ok, bad := verified(t, ctx)
	if verdict != "ok" || ok != 3 || bad != 0 {
		t.Fatalf("image page: %q with %d verified and %d failing entries, want ok, 3 (dev, test, the prod request) and 0", verdict, ok, bad)
	}
	cp := get(t, ctx, "read the checkpoint", chromedp.Text(css(`#checkpoint`)))
	if !strings.Contains(cp, "Checkpoint verified") {
		t.Errorf("checkpoint box: %q", cp)
	}
	screenshot(t, ctx, "image.png")

	run(t, ctx, "revoke from the page",
		chromedp.Navigate(in.sg.URL+"/ui/image/"+api),
		chromedp.WaitVisible(css(`#revoke-form summary`)),
		chromedp.Click(css(`#revoke-form summary`)),
		chromedp.SetValue(css(`#revoke-stage`), "dev"),
		chromedp.SendKeys(css(`#revoke-reason`), "CVE-2026-0001"),
		chromedp.Click(css(`#revoke`)),
		chromedp.WaitVisible(css(`#flash`)))
	flash := get(t, ctx, "read the result", chromedp.Text(css(`#flash`)))
	if !strings.Contains(flash, "Revoked") {
		t.Fatalf("after revoke: %q", flash)
	}
	run(t, ctx, "the board shows it",
		chromedp.Navigate(in.sg.URL+"/ui/?repo=story/"),
		chromedp.WaitVisible(css(`#board`)))
	cell := get(t, ctx, "read the api's dev cell", chromedp.Text(css(`#board tbody tr:first-child td[data-stage="dev"]`)))
	if !strings.Contains(cell, "revoked") || !strings.Contains(cell, "CVE-2026-0001") {
		t.Errorf("story/api's dev cell after the revocation: %q", cell)
	}
	prod := get(t, ctx, "read the app's prod cell", chromedp.Text(css(`#board tbody tr:nth-child(2) td[data-stage="prod"]`)))
	if !strings.Contains(prod, "1 pending approval") {
		t.Errorf("prod cell with a pending request: %q", prod)
	}
	screenshot(t, ctx, "board-revoked.png")

	var cookies []*network.Cookie
	run(t, ctx, "read the cookie", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
		cookies = res.Cookies
		return err
	}))
	var session string
	for _, c := range cookies {
		if c.Name == "__Host-stagegate-session" {
			session = c.Value
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict {
				t.Errorf("session cookie: httpOnly %v secure %v sameSite %v", c.HTTPOnly, c.Secure, c.SameSite)
			}
		}
	}
	run(t, ctx, "sign out",
		chromedp.Click(css(`#signout`)),
		chromedp.WaitVisible(css(`#token`)),
		chromedp.Navigate(in.sg.URL+"/ui/"),
		chromedp.WaitVisible(css(`#token`)))
	b := in.client(t)
	u, _ := url.Parse(in.sg.URL)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "__Host-stagegate-session", Value: session, Path: "/"}})
	if a := b.do(http.MethodGet, "/ui/", nil); a.status != http.StatusSeeOther {
		t.Errorf("the signed-out session still opens the board: %d", a.status)
	}

	// alice (security) approves the pipeline's request from the page; the
	// promotion completes and the board shows it in prod.
	signInPage(t, ctx, in.sg.URL, in.alice)
	run(t, ctx, "approve",
		chromedp.Navigate(in.sg.URL+"/ui/requests"),
		chromedp.WaitVisible(css(`form.answer input[name=reason]`)),
		chromedp.SendKeys(css(`form.answer input[name=reason]`), "scan clean"),
		chromedp.Click(css(`form.answer button[formaction$="/approve"]`)),
		chromedp.WaitVisible(css(`#flash`)))
	if flash := get(t, ctx, "read the result", chromedp.Text(css(`#flash`))); !strings.Contains(flash, "approved") {
		t.Fatalf("after approve: %q", flash)
	}
	run(t, ctx, "the board shows prod", chromedp.Navigate(in.sg.URL+"/ui/?repo=story/app&stage=prod"), chromedp.WaitVisible(css(`#board`)))
	if prod := get(t, ctx, "read the prod cell", chromedp.Text(css(`#board td[data-stage="prod"]`))); !strings.Contains(prod, app[:19]) || strings.Contains(prod, "pending") {
		t.Errorf("prod cell after the approval: %q", prod)
	}
}

// TestBrowserRewrittenHistory: the page remembers the newest checkpoint
// it saw; a server at the same address that now serves another history
// signed with the same keys (a restored or forged ledger) fails the
// consistency proof, and the page raises the alarm.
func TestBrowserRewrittenHistory(t *testing.T) {
	in := start(t)
	in.promote(t, "history/app", "dev", "test")
	ctx := newBrowser(t, in.servingCert(t))
	signInPage(t, ctx, in.sg.URL, in.ci)
	run(t, ctx, "open the ledger", chromedp.Navigate(in.sg.URL+"/ui/ledger"))
	if verdict, ok, _ := verified(t, ctx); verdict != "ok" || ok != 2 {
		t.Fatalf("ledger page: %q with %d verified entries", verdict, ok)
	}
	if hidden := get(t, ctx, "alarm", chromedp.Evaluate[bool](`document.querySelector('#alarm').hidden`)); !hidden {
		t.Fatalf("an alarm on an honest ledger")
	}

	// The ledger grows: the page proves the new checkpoint extends the
	// one it saw.
	in.promote(t, "history/next", "dev")
	run(t, ctx, "reload the ledger", chromedp.Navigate(in.sg.URL+"/ui/ledger"))
	if verdict, ok, _ := verified(t, ctx); verdict != "ok" || ok != 3 {
		t.Fatalf("ledger page after growing: %q with %d verified entries", verdict, ok)
	}
	if cp := get(t, ctx, "read the checkpoint", chromedp.Text(css(`#checkpoint`))); !strings.Contains(cp, "extends the checkpoint seen before (size 2), proven") {
		t.Errorf("checkpoint after growing: %q", cp)
	}
	if hidden := get(t, ctx, "alarm", chromedp.Evaluate[bool](`document.querySelector('#alarm').hidden`)); !hidden {
		t.Fatalf("an alarm on a ledger that only grew")
	}

	// The same installation (keys, tokens, address), its ledger replaced
	// by another one that shares no history with it.
	if err := in.sg.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(in.sg.DataDir, "ledger.db"), filepath.Join(t.TempDir(), "old-ledger.db")); err != nil {
		t.Fatal(err)
	}
	in.sg.Start()
	in.promote(t, "forged/app", "dev", "test")
	in.promote(t, "forged/other", "dev", "test")
	signInPage(t, ctx, in.sg.URL, in.ci)
	run(t, ctx, "open the ledger again", chromedp.Navigate(in.sg.URL+"/ui/ledger"), chromedp.WaitReady(css(`body[data-verified]`)))
	alarm := get(t, ctx, "read the alarm", chromedp.Evaluate[string](`document.querySelector('#alarm').hidden ? '' : document.querySelector('#alarm').innerText`))
	if !strings.Contains(alarm, "does not extend the one this browser saw at size 3") {
		t.Errorf("alarm after the history changed: %q", alarm)
	}
	screenshot(t, ctx, "rewritten.png")
}

// TestBrowserTamperedEntry: a proxy between the browser and serve flips
// one byte of one entry in the API's answer; the page shows that entry as
// failing verification, and the others as verified.
func TestBrowserTamperedEntry(t *testing.T) {
	in := start(t)
	in.promote(t, "tamper/app", "dev", "test")
	in.promote(t, "tamper/app", "dev")
	proxy := in.proxy(t)
	var flipped int = -1
	proxy.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path != "/ui/api/entries" || r.StatusCode != http.StatusOK {
			return nil
		}
		return rewriteJSON(r, func(ans map[string]any) {
			victim := ans["entries"].([]any)[1].(map[string]any)
			leaf, _ := decodeB64(victim["leaf"].(string))
			i := bytes.Index(leaf, []byte(`"reason":"e2e"`))
			if i < 0 {
				t.Errorf("entry has no reason to flip: %s", leaf)
				return
			}
			leaf[i+len(`"reason":"e2`)] ^= 0x01 // e2e -> e2d: still valid JSON
			victim["leaf"] = leaf
			flipped = int(victim["index"].(float64))
		})
	}
	srv := httptest.NewTLSServer(proxy)
	t.Cleanup(srv.Close)

	ctx := newBrowser(t, srv.Certificate())
	signInPage(t, ctx, srv.URL, in.ci)
	run(t, ctx, "open the image", chromedp.Navigate(srv.URL+"/ui/image/"+in.reg.Repo("tamper/app")))
	verdict, ok, bad := verified(t, ctx)
	if verdict != "failed" || ok != 2 || bad != 1 {
		t.Fatalf("through the tampering proxy: %q with %d verified and %d failing entries, want failed, 2 and 1", verdict, ok, bad)
	}
	msg := get(t, ctx, "read the failure", chromedp.Text(css(`li.entry.bad[data-index="`+strconv.Itoa(flipped)+`"]`)))
	if !strings.Contains(msg, "failed verification") || !strings.Contains(msg, "inclusion") {
		t.Errorf("the flipped entry %d says %q, want a failed inclusion", flipped, msg)
	}
	screenshot(t, ctx, "tampered.png")
}
