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
	// BoardColdMs is the first render, the projection folded from the
	// whole ledger; BoardMs the median of later ones and BoardP95Ms their
	// 95th percentile; FloorMs the median time of the ledger State
	// look-ups the board needs, without drawing anything.
	BoardColdMs float64 `json:"boardColdMs"`
	BoardMs     float64 `json:"boardMs"`
	BoardP95Ms  float64 `json:"boardP95Ms"`
	FloorMs     float64 `json:"floorMs"`
	BoardBytes  int     `json:"boardBytes"`
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
	add(board, "≤ 100 ms", fmt.Sprintf("%s median, %s p95 (%d KB page)", fmtMs(w.BoardMs), fmtMs(w.BoardP95Ms), w.BoardBytes>>10),
		ptr(w.BoardP95Ms <= float64(webBoardGoal.Milliseconds())),
		fmt.Sprintf("baseline: the ledger State look-ups alone, %s; the first render after a start, which also folds the board from the whole ledger, %s",
			fmtMs(w.FloorMs), fmtMs(w.BoardColdMs)))
	add(verify, "≤ 2 s", fmt.Sprintf("%s for %d entries (headless Chromium, WebCrypto)", fmtMs(w.BrowserMs), w.Entries),
		ptr(w.BrowserMs <= float64(webVerifyGoal.Milliseconds())),
		fmt.Sprintf("baseline: the Go verifier on the same entries, %s", fmtMs(w.GoMs)))
}
