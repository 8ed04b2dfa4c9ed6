package app

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// TestStartCompletesAtOpening: with approvals and a weekend freeze on
// dev, Start runs the completer: the approval given during the freeze is
// recorded and the request waits; when the injected clock reaches Monday
// 08:00 in Berlin (after the autumn DST change) and the completer's timer
// fires, the request is completed, with the real policy, ledger and
// registry. Close stops the completer (it returns). The test learns that
// a tick is over when the completer asks for its next timer: no sleeps.
func TestStartCompletesAtOpening(t *testing.T) {
	cfg := testConfig(t)
	dev := &cfg.Stages[0]
	dev.Approvals = &config.Approvals{Required: 1, Groups: []string{"security"}}
	dev.Windows = []config.Window{{Deny: "weekend freeze", TimeZone: "Europe/Berlin", Cron: "0 16 * * 5", Duration: config.Duration(64 * time.Hour)}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TokensFile = "" // as testConfig: Validate fills in the default
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	now := time.Date(2026, 10, 24, 12, 0, 0, 0, time.UTC) // Saturday, frozen
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	set := func(t time.Time) { mu.Lock(); defer mu.Unlock(); now = t }
	waits, fire := make(chan time.Duration), make(chan time.Time)
	after := func(d time.Duration) <-chan time.Time { waits <- d; return fire }

	a, err := Build(context.Background(), cfg, WithServiceClock(clock, after))
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			go func() { // a failed test may leave the completer waiting for us
				for range waits {
				}
			}()
			a.Close()
		}
	})
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-waits // the first tick: dev is frozen

	ctx := context.Background()
	ci := policy.Identity{Subject: "ci", Groups: []string{"pipeline"}}
	res, err := a.Service.Promote(ctx, promotion.Request{Image: sample.Image, Stage: "dev", Reason: "build 7", Requester: ci})
	if err != nil || res.Request == nil {
		t.Fatalf("request during the freeze: %+v, %v", res, err)
	}
	id := res.Request.ID
	res, err = a.Service.Approve(ctx, promotion.Answer{ID: id, Reason: "ok", By: policy.Identity{Subject: "sec", Groups: []string{"security"}}})
	if err != nil || res.Request == nil || res.Request.State != promotion.RequestPending ||
		res.Request.Waits != "waits for the window: stage dev opens at 2026-10-26T07:00:00Z" {
		t.Fatalf("approval during the freeze: %+v, %v", res.Request, err)
	}

	set(time.Date(2026, 10, 26, 7, 0, 0, 0, time.UTC)) // Monday 08:00 CET
	fire <- clock()
	<-waits // the tick at the opening is over
	v, err := a.Service.Request(ctx, id)
	if err != nil || v.State != promotion.RequestApproved || v.Promotion == nil {
		t.Fatalf("after the opening: %+v, %v; want approved by a promotion", v, err)
	}
	st, _, err := a.Ledger.State(res.Request.Digest, "dev")
	if err != nil || !st.Active() {
		t.Fatalf("dev state after the completion: %+v, %v", st, err)
	}

	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
}
