package main

import (
	"context"
	"fmt"
	"time"
)

// WebResult is the web view scenario: the figures of internal/web's
// TestWebScale (scaleResult there). The board is drawn by the real
// handler from a real ledger; the image page is verified by the real
// verify.js in a real headless Chromium.
type WebResult struct {
	Repositories int `json:"repositories"`
	Stages       int `json:"stages"`
	// RowsRendered is how many rows each board figure's page has: all
	// the repositories (?limit=1000), not a default page.
	RowsRendered int `json:"rowsRendered"`
	// BoardColdMs is the first render, the projection folded from the
	// whole ledger and every row drawn; BoardMs the median of later ones
	// (states read afresh, unchanged rows' HTML reused) and BoardP95Ms
	// their 95th percentile; BoardChangedMs the median render after one
	// more promotion (its row drawn anew); BoardRedrawMs the median render
	// when every row is drawn anew (pod counts that change on every look,
	// the cache's worst case); FloorMs the median time of the
	// ledger State look-ups the board needs, without drawing anything.
	BoardColdMs    float64 `json:"boardColdMs"`
	BoardMs        float64 `json:"boardMs"`
	BoardP95Ms     float64 `json:"boardP95Ms"`
	BoardChangedMs float64 `json:"boardChangedMs"`
	BoardRedrawMs  float64 `json:"boardRedrawMs"`
	FloorMs        float64 `json:"floorMs"`
	BoardBytes     int     `json:"boardBytes"`
	// BoardPageMs is the median render of the default page, PageRows
	// rows, as a person opens the board.
	PageRows    int     `json:"pageRows"`
	BoardPageMs float64 `json:"boardPageMs"`
	// Entries are verified by the browser in BrowserMs (the page's own
	// figure: fetch, checkpoint, every entry), median of runs; GoMs is
	// the Go verifier (ledger.VerifyReceipt with signing.CheckEntry) on
	// the same entries, the baseline.
	Entries   int     `json:"entries"`
	BrowserMs float64 `json:"browserMs"`
	GoMs      float64 `json:"goMs"`
}

// Goals of issue 17.
const (
	webBoardGoal  = 100 * time.Millisecond
	webVerifyGoal = 2 * time.Second
)

// web runs TestWebScale (STAGEGATE_WEB_SCALE=1) and reads its figures.
func (r *Runner) web(ctx context.Context) error {
	var res WebResult
	if err := r.figuresTest(ctx, "web", "./internal/web/", "TestWebScale", "STAGEGATE_WEB_SCALE", 15*time.Minute, &res); err != nil {
		return err
	}
	r.res.Web = &res
	return nil
}

// webTargets are issue 17's goals next to the figures.
func webTargets(w *WebResult, add func(name, goal, value string, met *bool, note string)) {
	const (
		board  = "server time to render the board, 1,000 repositories × 4 stages"
		verify = "browser time to verify an image page of 500 entries"
	)
	if w == nil {
		add(board, "≤ 100 ms", "not measured", nil, "")
		add(verify, "≤ 2 s", "not measured", nil, "")
		return
	}
	add(board, "≤ 100 ms", fmt.Sprintf("%s median, %s p95, %d rows rendered (%d KB page); %s after a promotion",
		fmtMs(w.BoardMs), fmtMs(w.BoardP95Ms), w.RowsRendered, w.BoardBytes>>10, fmtMs(w.BoardChangedMs)),
		ptr(w.BoardP95Ms <= float64(webBoardGoal.Milliseconds()) && w.BoardChangedMs <= float64(webBoardGoal.Milliseconds())),
		fmt.Sprintf("baseline: the ledger State look-ups alone, %s; every row drawn anew (pod counts changed since the last look), %s; the first render after a start, which also folds the board from the whole ledger and draws every row, %s; the default page of %d rows, %s",
			fmtMs(w.FloorMs), fmtMs(w.BoardRedrawMs), fmtMs(w.BoardColdMs), w.PageRows, fmtMs(w.BoardPageMs)))
	add(verify, "≤ 2 s", fmt.Sprintf("%s for %d entries (headless Chromium, WebCrypto)", fmtMs(w.BrowserMs), w.Entries),
		ptr(w.BrowserMs <= float64(webVerifyGoal.Milliseconds())),
		fmt.Sprintf("baseline: the Go verifier on the same entries, %s", fmtMs(w.GoMs)))
}
