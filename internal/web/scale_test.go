package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/internal/testutil/browser"
	"github.com/stagegate/stagegate/internal/web"
)

// scaleResult is what TestWebScale writes for `make bench` (bench/web.go
// WebResult reads the same fields).
type scaleResult struct {
	Repositories   int     `json:"repositories"`
	Stages         int     `json:"stages"`
	RowsRendered   int     `json:"rowsRendered"`
	BoardColdMs    float64 `json:"boardColdMs"`
	BoardMs        float64 `json:"boardMs"`
	BoardP95Ms     float64 `json:"boardP95Ms"`
	BoardChangedMs float64 `json:"boardChangedMs"`
	BoardRedrawMs  float64 `json:"boardRedrawMs"`
	PageRows       int     `json:"pageRows"`
	BoardPageMs    float64 `json:"boardPageMs"`
	FloorMs        float64 `json:"floorMs"`
	BoardBytes     int     `json:"boardBytes"`
	Entries        int     `json:"entries"`
	BrowserMs      float64 `json:"browserMs"`
	GoMs           float64 `json:"goMs"`
}

type benchToken struct{}

func (benchToken) Authenticate(r *http.Request) (policy.Identity, error) {
	if r.Header.Get("Authorization") == "Bearer bench" {
		return policy.Identity{Subject: "bench", Groups: []string{"release"}, Method: "token"}, nil
	}
	return policy.Identity{}, errors.New("invalid bearer token")
}

var csrfValue = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// signInRecorder signs in through the handlers and returns the session
// cookie, for requests made without a network.
func signInRecorder(t *testing.T, h http.Handler) *http.Cookie {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "https://sg/ui/signin", nil))
	m := csrfValue.FindStringSubmatch(rec.Body.String())
	if m == nil {
		t.Fatalf("sign-in form: %d", rec.Code)
	}
	form := url.Values{"csrf": {m[1]}, "token": {"bench"}}
	req := httptest.NewRequest(http.MethodPost, "https://sg/ui/signin", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range rec.Result().Cookies() {
		req.AddCookie(c)
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	for _, c := range rec.Result().Cookies() {
		if c.Name == "__Host-stagegate-session" && c.Value != "" {
			return c
		}
	}
	t.Fatalf("sign-in: %d", rec.Code)
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentile(ds []time.Duration, p float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// TestWebScale measures issue 17's two figures for `make bench`
// (STAGEGATE_WEB_SCALE=1; the figures go to STAGEGATE_WEB_SCALE_OUT). It
// asserts that the answers are right, not how fast they came.
func TestWebScale(t *testing.T) {
	if os.Getenv("STAGEGATE_WEB_SCALE") != "1" {
		t.Skip("a bench scenario: make bench (STAGEGATE_WEB_SCALE=1)")
	}
	res := scaleResult{Repositories: 1000, Stages: 4, Entries: 500}
	boardScale(t, &res)
	verifyScale(t, &res)
	b, _ := json.MarshalIndent(res, "", "  ")
	t.Logf("%s", b)
	if out := os.Getenv("STAGEGATE_WEB_SCALE_OUT"); out != "" {
		if err := os.WriteFile(out, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// boardScale: 1,000 repositories promoted to 4 stages, the board drawn
// whole (?limit=1000, every row rendered) by the real handler: first
// after a start (fold and draw every row), then again (states read
// afresh, unchanged rows reused), then after each of a few promotions
// (that row drawn anew); and the default page, as a person opens it.
func boardScale(t *testing.T, res *scaleResult) {
	stages := []string{"dev", "test", "stage", "prod"}
	var entries []ledger.Entry
	for r := range res.Repositories {
		for _, st := range stages {
			entries = append(entries, ledger.Entry{Index: uint64(len(entries)), Kind: ledger.KindPromotion,
				Repository: fmt.Sprintf("registry.test/team%02d/app%04d", r%50, r), Digest: digest(fmt.Sprint(r)),
				Stage: st, Subject: "ci", Groups: []string{"pipeline"}, Time: t0.Add(time.Duration(len(entries)) * time.Second)})
		}
	}
	l, _ := openLedger(t, entries)
	s, err := web.New(l, benchToken{}, http.NotFoundHandler(), stages, web.Keys{})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	cookie := signInRecorder(t, mux)
	render := func() (time.Duration, int) { return renderRows(t, mux, cookie, "limit=1000", res.Repositories) }
	cold, size := render()
	res.RowsRendered = res.Repositories
	res.BoardColdMs, res.BoardBytes = ms(cold), size
	var warm, floor, changed, page []time.Duration
	for range 30 {
		d, _ := render()
		warm = append(warm, d)
		start := time.Now()
		for _, e := range entries {
			if st, ok, err := l.State(e.Digest, e.Stage); err != nil || !ok || !st.Promoted {
				t.Fatalf("state of %s in %s: %v %v", e.Digest, e.Stage, ok, err)
			}
		}
		floor = append(floor, time.Since(start))
		d, _ = renderRows(t, mux, cookie, "", 50)
		page = append(page, d)
	}
	for i := range 10 {
		e := entries[i*97]
		e.Digest = digest(fmt.Sprint("new", i))
		if _, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			e.Index = index
			return &e, nil
		}); err != nil {
			t.Fatal(err)
		}
		d, _ := render()
		changed = append(changed, d)
	}
	// Every row drawn anew on every look: pod counts (continuous
	// validation) that change each time, the worst case of the cache.
	pods := &tickPods{}
	s2, err := web.New(l, benchToken{}, http.NotFoundHandler(), stages, web.Keys{}, web.WithRunning(pods))
	if err != nil {
		t.Fatal(err)
	}
	mux2 := http.NewServeMux()
	s2.Register(mux2)
	cookie2 := signInRecorder(t, mux2)
	var redraw []time.Duration
	for range 11 {
		pods.n.Add(1)
		d, _ := renderRows(t, mux2, cookie2, "limit=1000", res.Repositories)
		redraw = append(redraw, d)
	}
	res.BoardRedrawMs = ms(percentile(redraw[1:], .5))
	res.PageRows = 50
	res.BoardMs, res.BoardP95Ms, res.FloorMs = ms(percentile(warm, .5)), ms(percentile(warm, .95)), ms(percentile(floor, .5))
	res.BoardChangedMs, res.BoardPageMs = ms(percentile(changed, .5)), ms(percentile(page, .5))
}

// tickPods is continuous validation whose every count changes between
// two looks at the board.
type tickPods struct{ n atomic.Int64 }

func (p *tickPods) Running([]string, string, int) ([]inventory.RunningPod, int, error) {
	return nil, int(p.n.Load()), nil
}

// renderRows draws the board at ?query and checks it has rows rows.
func renderRows(t *testing.T, mux http.Handler, cookie *http.Cookie, query string, rows int) (time.Duration, int) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://sg/ui/?"+query, nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	start := time.Now()
	mux.ServeHTTP(rec, req)
	d := time.Since(start)
	if rec.Code != http.StatusOK {
		t.Fatalf("board: %d", rec.Code)
	}
	if n := strings.Count(rec.Body.String(), `<th scope="row">`); n != rows {
		t.Fatalf("board ?%s has %d rows, want %d", query, n, rows)
	}
	return d, rec.Body.Len()
}

// verifyScale: an image of 500 signed entries, its page opened in
// headless Chromium, which verifies each; the Go verifier on the same
// entries is the baseline.
func verifyScale(t *testing.T, res *scaleResult) {
	entries := make([]ledger.Entry, res.Entries)
	for i := range entries {
		entries[i] = entryFor(t, ledger.KindPromotion, uint64(i), []string{"dev", "test", "stage", "prod"}[i%4], digest(strconv.Itoa(i/4)), "build "+strconv.Itoa(i))
	}
	l, cps := openLedger(t, entries)
	dir := filepath.Join(t.TempDir(), "keys")
	signingtest.WriteKeyDir(t, dir)
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	s, err := web.New(l, benchToken{}, http.NotFoundHandler(), []string{"dev", "test", "stage", "prod"},
		web.Keys{Log: read(signing.LogPubFile), Cosign: read(signing.CosignPubFile) + "\n"})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)

	// The baseline: what `stagegate receipt verify` does, per entry.
	check := signing.CheckEntry(signingtest.Verifier(t))
	cp := cps[uint64(len(entries))]
	start := time.Now()
	for _, e := range entries {
		p, err := l.InclusionProof(e.Index, uint64(len(entries)))
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyReceipt(ledger.Receipt{Entry: e, Inclusion: p, Checkpoint: cp}, signingtest.LogVerifier(t), check); err != nil {
			t.Fatalf("go verifier: %v", err)
		}
	}
	res.GoMs = ms(time.Since(start))

	ctx := browser.New(t, browser.TrustCert(srv.Certificate()))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx,
		chromedp.Navigate(srv.URL+"/ui/signin"),
		chromedp.SendKeys(chromedp.CSS(`#token`), "bench"),
		chromedp.Click(chromedp.CSS(`#signin`)),
		chromedp.WaitVisible(chromedp.CSS(`#board`))); err != nil {
		text, _ := chromedp.Run(context.WithoutCancel(ctx), chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("sign in: %v; the page says: %s", err, text)
	}
	var runs []time.Duration
	for range 3 {
		if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/ui/image/"+repo), chromedp.WaitReady(chromedp.CSS(`body[data-verified]`))); err != nil {
			t.Fatalf("image page: %v", err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]string](`({...document.body.dataset, ok: String(document.querySelectorAll('li.entry.ok').length)})`))
		if err != nil {
			t.Fatal(err)
		}
		if got["verified"] != "ok" || got["ok"] != strconv.Itoa(res.Entries) {
			t.Fatalf("image page: %v, want ok with %d verified entries", got, res.Entries)
		}
		n, err := strconv.Atoi(got["verifyMs"])
		if err != nil {
			t.Fatalf("verifyMs %q", got["verifyMs"])
		}
		runs = append(runs, time.Duration(n)*time.Millisecond)
	}
	res.BrowserMs = ms(percentile(runs, .5))
}
