package browser_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/stagegate/stagegate/internal/testutil/browser"
)

// recorder is a testing.TB that also hands each log line to a channel, so
// that the test can wait for the browser's events without sleeping.
type recorder struct {
	testing.TB
	mu    sync.Mutex
	lines chan string
}

func (r *recorder) Logf(format string, args ...any) {
	r.TB.Logf(format, args...)
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case r.lines <- strings.TrimSpace(fmt.Sprintf(format, args...)):
	default:
	}
}

func TestNewRunsPageAndForwardsConsole(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>t</title><p id="p">ready</p>`))
	}))
	defer srv.Close()

	rec := &recorder{TB: t, lines: make(chan string, 16)}
	ctx := browser.New(rec)
	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL)); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#p")))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := chromedp.Run(ctx, chromedp.Evaluate[int](`console.log("hello", 42); setTimeout(() => { throw new Error("boom") }); 1 + 1`))
	if err != nil {
		t.Fatal(err)
	}
	if text != "ready" || sum != 2 {
		t.Fatalf("page text %q and 1+1 = %d, want ready and 2", text, sum)
	}
	want := map[string]bool{"browser log: hello 42": false, "Error: boom": false}
	// No deadline of its own: a missing event ends in go test's timeout,
	// with the log of what did arrive.
	for remaining := len(want); remaining > 0; {
		select {
		case line := <-rec.lines:
			for w, seen := range want {
				if !seen && strings.Contains(line, w) {
					want[w] = true
					remaining--
				}
			}
		case <-ctx.Done():
			t.Fatalf("browser events not logged: %v", want)
		}
	}
}

func TestFind(t *testing.T) {
	for name, tt := range map[string]struct {
		env     string
		wantErr bool
	}{
		"env names a missing binary": {env: "/nonexistent/chromium", wantErr: true},
		"env names an executable":    {env: "/bin/sh"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv(browser.EnvPath, tt.env)
			got, err := browser.Find()
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), browser.EnvPath) {
					t.Fatalf("Find() = %q, %v; want an error naming %s", got, err, browser.EnvPath)
				}
				return
			}
			if err != nil || got != tt.env {
				t.Fatalf("Find() = %q, %v; want %q", got, err, tt.env)
			}
		})
	}
}
