package web

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func digestN(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func appendEntry(t *testing.T, l *ledger.Ledger, e ledger.Entry) {
	t.Helper()
	if _, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		e.Index, e.Subject, e.Time = index, "ci", time.Date(2026, 12, 3, 12, 0, int(index), 0, time.UTC)
		return &e, nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestBoard draws the board from a real ledger: the newest digests of a
// cell and how many older ones, a revocation shown as such (from the
// ledger's state, also for a revocation in every stage), break-glass,
// copies, and each filter and page.
func TestBoard(t *testing.T) {
	l, _ := ledgertest.New(t)
	promote := func(repo string, n int, stage string, copies ...string) {
		appendEntry(t, l, ledger.Entry{Kind: ledger.KindPromotion, Repository: repo, Digest: digestN(n), Stage: stage, Copies: copies})
	}
	for n := 1; n <= 4; n++ {
		promote("reg/a", n, "dev")
	}
	promote("reg/a", 4, "prod", "mirror/a")
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/a", Digest: digestN(4), Stage: ledger.AllStages, Reason: "CVE"})
	for i := range 5 {
		promote(fmt.Sprintf("reg/r%d", i), 10+i, "dev")
	}
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindBreakGlass, Repository: "ns/Deployment/web", Digest: digestN(30), Stage: "prod",
		Workload: "ns/Deployment/web", Images: []string{"reg.example/hot@" + digestN(30)}, Reason: "outage"})

	s, err := New(l, oneToken{}, nil, []string{"dev", "prod"}, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	view := func(q string) boardView {
		t.Helper()
		v, err := s.boardView(t.Context(), mustQuery(t, q))
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	repos := func(v boardView) string {
		var out []string
		for _, r := range v.Rows {
			out = append(out, r.Repo)
		}
		return strings.Join(out, " ")
	}

	all := view("")
	if got, want := repos(all), "mirror/a reg.example/hot reg/a reg/r0 reg/r1 reg/r2 reg/r3 reg/r4"; got != want {
		t.Fatalf("rows %q, want %q", got, want)
	}
	a := all.Rows[2]
	dev, prod := a.Cells[0], a.Cells[1]
	if len(dev.Digests) != 3 || dev.Older != 1 || dev.Digests[0].Digest != digestN(4) || dev.Digests[2].Digest != digestN(2) {
		t.Errorf("reg/a dev: %+v, want digests 4, 3, 2 and 1 older", dev)
	}
	if !dev.Digests[0].Revoked || !strings.Contains(dev.Digests[0].Meta, "CVE") || dev.Digests[1].Revoked {
		t.Errorf("reg/a dev: digest 4 must show revoked (everywhere, CVE) and 3 promoted: %+v", dev.Digests)
	}
	if len(prod.Digests) != 1 || !prod.Digests[0].Revoked {
		t.Errorf("reg/a prod: %+v, want digest 4 revoked", prod)
	}
	if c := all.Rows[0].Cells[1]; len(c.Digests) != 1 || c.Digests[0].Digest != digestN(4) {
		t.Errorf("the copy mirror/a has no prod cell: %+v", c)
	}
	if bg := all.Rows[1].Cells[1].BreakGlass; bg == nil || bg.Workload != "ns/Deployment/web" {
		t.Errorf("reg/hot prod: break-glass %+v", bg)
	}

	for name, tt := range map[string]struct{ query, want string }{
		"by repository":      {"repo=r3", "reg/r3"},
		"by stage":           {"stage=prod", "mirror/a reg.example/hot reg/a"},
		"revoked":            {"state=revoked", "mirror/a reg/a"},
		"break-glass":        {"state=break-glass", "reg.example/hot"},
		"promoted in prod":   {"stage=prod&state=promoted", ""},
		"a page":             {"limit=3&page=2", "reg/r0 reg/r1 reg/r2"},
		"unknown stage: all": {"stage=qa&limit=2", "mirror/a reg.example/hot"},
	} {
		t.Run(name, func(t *testing.T) {
			if got := repos(view(tt.query)); got != tt.want {
				t.Errorf("?%s: rows %q, want %q", tt.query, got, tt.want)
			}
		})
	}
	p := view("limit=3&page=2")
	if p.Prev == "" || p.Next == "" || !strings.Contains(p.Next, "page=3") {
		t.Errorf("page 2 of 3: prev %q next %q", p.Prev, p.Next)
	}

	// With continuous validation, each digest says how many pods run it.
	s2, err := New(l, oneToken{}, nil, []string{"dev", "prod"}, Keys{}, WithRunning(runningPods{digestN(3): 3, digestN(2): 1}))
	if err != nil {
		t.Fatal(err)
	}
	v, err := s2.boardView(t.Context(), mustQuery(t, "repo=reg/a&stage=dev"))
	if err != nil {
		t.Fatal(err)
	}
	if d := v.Rows[0].Cells[0].Digests; !strings.HasSuffix(d[1].Meta, "· 3 pods") || !strings.HasSuffix(d[2].Meta, "· 1 pod") || !strings.Contains(d[0].Meta, "0 pods") {
		t.Errorf("running pods: %q, %q, %q", d[0].Meta, d[1].Meta, d[2].Meta)
	}

	// The board catches up on entries appended since the last look.
	promote("reg/new", 40, "dev")
	if got := repos(view("repo=new")); got != "reg/new" {
		t.Errorf("after a new promotion: rows %q", got)
	}
}

func mustQuery(t *testing.T, q string) url.Values {
	v, err := url.ParseQuery(q)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

type runningPods map[string]int

func (r runningPods) Running(digests []string, _ string, _ int) ([]inventory.RunningPod, int, error) {
	return nil, r[digests[0]], nil
}
