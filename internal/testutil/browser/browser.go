// Package browser starts a real headless Chromium for the tests of the web
// view (the verifier's, the end-to-end story's and the bench's), through
// github.com/chromedp/chromedp, in one way for all of them: the same flags,
// a fresh profile per test, and the page's console and uncaught exceptions
// in the test log, so that a page that fails says why.
package browser

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// EnvPath names the variable that points at the browser binary, for a
// machine where it is not on PATH under one of Candidates.
const EnvPath = "STAGEGATE_CHROMIUM"

// Candidates are the names looked up on PATH, in order: Debian's package
// installs chromium, Ubuntu's and older ones chromium-browser.
var Candidates = []string{"chromium", "chromium-browser", "google-chrome"}

// Find returns the browser binary: $STAGEGATE_CHROMIUM if set, else the
// first of Candidates on PATH.
func Find() (string, error) {
	if p := os.Getenv(EnvPath); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("browser: %s=%q: %w", EnvPath, p, err)
		}
		return path, nil
	}
	for _, name := range Candidates {
		if path, err := exec.LookPath(name); err == nil {
			return path, nil
		}
	}
	return "", fmt.Errorf("browser: none of %s on PATH and %s unset", strings.Join(Candidates, ", "), EnvPath)
}

// New starts a headless browser for tb and returns the context of its first
// tab, for chromedp.Run. The browser is closed when the test ends. Without
// a browser the test fails under CI=true, where a missing tool is a broken
// setup, and is skipped elsewhere.
func New(tb testing.TB, extra ...chromedp.ExecAllocatorOption) context.Context {
	tb.Helper()
	path, err := Find()
	if err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			tb.Fatalf("%v (run make tools)", err)
		}
		tb.Skipf("%v: run make tools", err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Headless,
		// Tests run as root (CI and the dev machines), where Chromium
		// refuses to start with its sandbox.
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		// /dev/shm is small in containers; Chromium then crashes tabs.
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(tb.TempDir()),
	}
	opts = append(opts, extra...)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	// Start the browser now, on the tab's own context (the browser lives
	// as long as the context of the first Run), so that a browser that
	// cannot start fails here and not inside the test's first action.
	if _, err := chromedp.Run(ctx, chromedp.Func(func(context.Context, *chromedp.Target) error { return nil })); err != nil {
		cancel()
		cancelAlloc()
		tb.Fatalf("browser: start %s: %v", path, err)
	}
	stopLog := Log(tb, ctx)
	tb.Cleanup(func() {
		stopLog()
		// Closing the first tab's context closes the browser and waits
		// for it to exit, so no process outlives the test.
		if err := chromedp.Cancel(ctx); err != nil && !errors.Is(err, context.Canceled) {
			tb.Logf("browser: close: %v", err)
		}
		cancel()
		cancelAlloc()
	})
	return ctx
}

// Log copies the console messages and uncaught exceptions of the tab of
// ctx (made with chromedp.NewContext, already run) to tb's log until the
// returned function is called, which waits for the copy to stop: logging
// after a test ended panics. New does it for its tab; a test that opens
// more tabs calls it for each.
func Log(tb testing.TB, ctx context.Context) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	messages := chromedp.Console(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for m, err := range messages {
			if err != nil {
				return // the tab or the copy ended
			}
			where := ""
			if m.URL != "" {
				where = fmt.Sprintf(" (%s:%d:%d)", m.URL, m.Line+1, m.Column+1)
			}
			tb.Logf("browser %s%s", m, where)
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// TrustCert makes the browser accept TLS certificates with cert's public
// key as if a CA it trusts had signed them (Chromium's
// --ignore-certificate-errors-spki-list), and no other: a test server's
// self-signed certificate then gives a page without a certificate error,
// whose Secure cookies and secure context are what a user's are.
func TrustCert(cert *x509.Certificate) chromedp.ExecAllocatorOption {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(sum[:]))
}
