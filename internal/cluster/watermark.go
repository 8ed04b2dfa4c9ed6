package cluster

import (
	"sync"
	"time"
)

// Watermark is how current a follower's ledger is known to be, as a read
// index: at time asked the leader's ledger held n entries; once this
// replica's ledger holds that many, it holds everything acknowledged
// before asked (the leader answers a write only after applying it), so
// it is at most now-asked behind. Raft's heartbeats carry no commit
// index, and Raft's own applied index counts entries handed to the FSM,
// not written by it, so a replica that was cut off and hears a heartbeat
// again does not know by itself what it missed; asking the leader for
// its ledger's size does.
//
// The leader is current by itself: it applies a write before it answers
// it, and Raft makes it step down when it loses its quorum.
type Watermark struct {
	mu sync.Mutex
	// verified is the newest Asked whose Commit this replica applied.
	verified time.Time
	// pending is the newest answer not applied yet.
	pending *leaderCommit
	started time.Time
}

type leaderCommit struct {
	asked  time.Time
	commit uint64
}

// NewWatermark starts with nothing verified since start.
func NewWatermark(start time.Time) *Watermark { return &Watermark{started: start} }

// Leader records that this replica is the leader at now.
func (w *Watermark) Leader(now time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.verified, w.pending = now, nil
}

// Asked records the leader's ledger size as answered to a question sent
// at asked, and this replica's ledger size now.
func (w *Watermark) Asked(asked time.Time, commit, applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// What this replica holds now may cover the question still pending
	// from before: settle that first. Under a steady write load the
	// leader is always a little ahead when asked, so checking only the
	// newest answer never verified a healthy follower, which then went
	// stale and failed closed.
	w.appliedLocked(applied)
	if w.pending == nil || asked.After(w.pending.asked) {
		w.pending = &leaderCommit{asked: asked, commit: commit}
	}
	w.appliedLocked(applied)
}

// Applied records this replica's ledger size.
func (w *Watermark) Applied(applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.appliedLocked(applied)
}

func (w *Watermark) appliedLocked(applied uint64) {
	if p := w.pending; p != nil && applied >= p.commit {
		if p.asked.After(w.verified) {
			w.verified = p.asked
		}
		w.pending = nil
	}
}

// Stale returns a *StaleError when nothing verified is more recent than
// after before now, or nothing was verified yet: a replica that just
// started (an old copy of the ledger, say) does not know what it missed
// until the leader told it and it applied that far.
func (w *Watermark) Stale(now time.Time, after time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.verified.IsZero() {
		return &StaleError{For: now.Sub(w.started), After: after, Never: true}
	}
	if d := now.Sub(w.verified); d > after {
		return &StaleError{For: d, After: after}
	}
	return nil
}

// CatchingUp reports the leader's ledger size this replica has yet to
// reach, if any.
func (w *Watermark) CatchingUp() (commit uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		return 0, false
	}
	return w.pending.commit, true
}
