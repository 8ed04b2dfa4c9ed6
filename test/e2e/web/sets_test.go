package web

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestBrowserPromotionSet: an entry recorded in a promotion set verifies
// in the browser like any other, and its page names the set's other
// member, from the verified leaf.
func TestBrowserPromotionSet(t *testing.T) {
	in := start(t)
	app, err := in.reg.PushRandom("set/app:1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := in.reg.PushRandom("set/config:1")
	if err != nil {
		t.Fatal(err)
	}
	in.sg.Token = in.ci
	in.sg.MustRun(t, in.sg.ClientFlags("promote", app, cfg, "--stage", "dev", "--reason", "e2e set", "-o", "json")...)

	ctx := newBrowser(t, in.servingCert(t))
	signInPage(t, ctx, in.sg.URL, in.ci)
	run(t, ctx, "open the image", chromedp.Navigate(in.sg.URL+"/ui/image/"+in.reg.Repo("set/app")))
	if verdict, ok, bad := verified(t, ctx); verdict != "ok" || ok != 1 || bad != 0 {
		t.Fatalf("image page: %q with %d verified and %d failing entries, want ok, 1, 0", verdict, ok, bad)
	}
	timeline := get(t, ctx, "read the timeline", chromedp.Text(css(`#timeline`)))
	if !strings.Contains(timeline, "promotion set") || !strings.Contains(timeline, in.reg.Repo("set/config")) {
		t.Fatalf("the timeline does not name the set and its other member:\n%s", timeline)
	}
}
