package promotion

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// A request may collect its quorum while its stage is closed by its
// windows (Approve records the approvals, and the request waits). The
// Completer completes those requests at the next open moment, if they are
// still valid then: pending (not expired, not rejected) with the quorum,
// and passing the policy, asked again as for any completion. It reads the
// ledger only, so that after a restart, or a change of Raft leader, what
// waits is found again; in a cluster only the leader runs it (WithLeader).

// Completer completes the requests that wait for their stage's window.
type Completer struct {
	svc    *Service
	leader func() bool
	after  func(time.Duration) <-chan time.Time
	log    *slog.Logger

	// wasLeader is false until a tick runs as leader: the first such tick
	// scans every open stage, for what waited before it led.
	wasLeader bool
	// closed are the stages closed at the last tick, and retry those whose
	// waiting requests could not all be completed: both are scanned at
	// the next tick that finds them open.
	closed, retry map[string]bool
}

// CompleterOption configures a Completer.
type CompleterOption func(*Completer)

// WithLeader makes the Completer act only while leader reports true (the
// Raft leader of a cluster); by default it always acts.
func WithLeader(leader func() bool) CompleterOption {
	return func(c *Completer) { c.leader = leader }
}

// WithTimer replaces time.After in Run, for tests that move the clock
// (WithClock) instead of waiting.
func WithTimer(after func(time.Duration) <-chan time.Time) CompleterOption {
	return func(c *Completer) { c.after = after }
}

// maxCompleterWait bounds Run's sleep: a new leader, a retry and a clock
// that was set are noticed this soon.
const maxCompleterWait = time.Minute

// minCompleterWait keeps a timer that fires a little early from spinning
// just before an opening.
const minCompleterWait = time.Second

// NewCompleter makes the service's Completer.
func (s *Service) NewCompleter(opts ...CompleterOption) *Completer {
	c := &Completer{svc: s, after: time.After, log: s.log, closed: map[string]bool{}, retry: map[string]bool{}}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Run ticks until ctx ends: at each next open moment of a stage with
// approvals, and at least every maxCompleterWait.
func (c *Completer) Run(ctx context.Context) {
	for {
		wait := maxCompleterWait
		if next := c.Tick(ctx); !next.IsZero() {
			wait = min(max(next.Sub(c.svc.now()), minCompleterWait), maxCompleterWait)
		}
		select {
		case <-ctx.Done():
			return
		case <-c.after(wait):
		}
	}
}

// Tick completes, at the service's clock, the waiting requests of each
// stage with approvals that is open now and was closed at the last tick
// (or has some left to retry), and returns the earliest opening of a
// closed stage with approvals, when it should tick next (zero: none).
func (c *Completer) Tick(ctx context.Context) time.Time {
	now := c.svc.now().UTC()
	var next time.Time
	if c.leader != nil && !c.leader() {
		c.wasLeader = false
		return next
	}
	fresh := !c.wasLeader
	c.wasLeader = true
	for _, stage := range c.svc.stages {
		rule, ok := c.svc.approvalRules[stage]
		if !ok {
			continue
		}
		open, change := c.svc.windows[stage].Schedule.Open(now)
		if !open {
			c.closed[stage] = true
			if !change.IsZero() && (next.IsZero() || change.Before(next)) {
				next = change
			}
			continue
		}
		if !fresh && !c.closed[stage] && !c.retry[stage] {
			continue
		}
		left := c.completeStage(ctx, stage, rule, now)
		c.closed[stage], c.retry[stage] = false, left
	}
	return next
}

// completeStage completes the pending requests of stage that have their
// quorum, and reports whether any is left (its completion failed).
func (c *Completer) completeStage(ctx context.Context, stage string, rule ApprovalRule, now time.Time) (left bool) {
	start, err := c.svc.liveRequestsStart(rule, now)
	if err != nil {
		c.log.Warn("completer: finding the waiting requests failed", "stage", stage, "err", err)
		return true
	}
	for {
		page, nextPage, err := c.svc.Requests(ctx, stage, RequestPending, start, 100)
		if err != nil {
			c.log.Warn("completer: reading the waiting requests failed", "stage", stage, "err", err)
			return true
		}
		for _, v := range page {
			if v.Needed > 0 || v.Waits != "" {
				continue
			}
			res, err := c.svc.complete(ctx, v)
			switch {
			case errors.Is(err, ErrNotPending):
				// Completed, rejected or expired meanwhile.
			case err != nil:
				left = true
				c.log.Warn("completer: completing a request at the window's opening failed; it stays pending",
					"stage", stage, "request", v.ID, "err", err)
			default:
				c.log.Info("request completed at the window's opening", "stage", stage, "request", v.ID,
					"index", res.Receipt.Entry.Index, "approvals", len(v.Approvals))
			}
		}
		if nextPage == nil {
			return left
		}
		start = *nextPage
	}
}
