package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// digestResolver answers for image references that already carry their
// digest, so that the promotion scenario measures stagegate (policy,
// signing, durable commit) and not a registry.
type digestResolver struct{}

func (digestResolver) Resolve(_ context.Context, ref string) (registry.Resolved, error) {
	repo, digest, ok := strings.Cut(ref, "@")
	if !ok {
		return registry.Resolved{}, fmt.Errorf("bench: %s is not pinned", ref)
	}
	return registry.Resolved{Reference: ref, Repository: repo, Digest: digest}, nil
}

// promotion is scenario 5: concurrent clients promote distinct digests
// through the promotion use case, with the real policy, cosign key and a
// durable (fsynced) ledger, as `serve` wires them.
func (r *Runner) promotion(ctx context.Context) error {
	dir, err := os.MkdirTemp(r.ws.dir, "promote-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfg, err := r.ws.config(dir, "127.0.0.1:0", "")
	if err != nil {
		return err
	}
	a, err := app.Build(ctx, cfg, app.WithResolver(digestResolver{}))
	if err != nil {
		return err
	}
	defer a.Close()
	svc := a.Service
	first := cfg.StageNames()[0]
	who := policy.Identity{Subject: "ci-pipeline", Groups: []string{"pipeline"}, Method: "token"}

	var (
		next    atomic.Int64
		mu      sync.Mutex
		lat     []time.Duration
		errs    int
		errText string
	)
	promote := func() (time.Duration, error) {
		i := int(next.Add(1)) + 50_000_000 // never a fixture digest
		t0 := time.Now()
		res, err := svc.Promote(ctx, promotion.Request{
			Image: repoOf(i) + "@" + digestOf(i), Stage: first, Reason: "bench", Requester: who,
		})
		if err == nil && !res.Created {
			err = fmt.Errorf("bench: promotion of a new digest was not created")
		}
		return time.Since(t0), err
	}
	if _, err := promote(); err != nil {
		return fmt.Errorf("bench: first promotion: %w", err)
	}
	deadline := time.Now().Add(r.plan.PromoteDuration.Std())
	start := time.Now()
	var wg sync.WaitGroup
	for range r.plan.PromoteClients {
		wg.Go(func() {
			var mine []time.Duration
			for time.Now().Before(deadline) && ctx.Err() == nil {
				d, err := promote()
				mu.Lock()
				if err != nil {
					errs++
					errText = err.Error()
				}
				mu.Unlock()
				mine = append(mine, d)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	p := &r.res.Promotion
	p.Clients = r.plan.PromoteClients
	p.Seconds = elapsed.Seconds()
	p.Count = len(lat) - errs
	p.Errors = errs
	p.LastError = errText
	p.PerSecond = float64(p.Count) / elapsed.Seconds()
	if len(lat) > 0 {
		p.P50 = ms(lat[len(lat)/2])
		p.P99 = ms(lat[min(len(lat)*99/100, len(lat)-1)])
		p.Max = ms(lat[len(lat)-1])
	}
	if fi, err := os.Stat(filepath.Join(dir, "ledger.db")); err == nil {
		p.FileBytes = fi.Size()
	}
	r.log.Info("promotion", "per second", fmt.Sprintf("%.0f", p.PerSecond), "p99 ms", p.P99, "errors", errs)
	return nil
}
