package cluster

import (
	"sync"
	"time"
)

// Watermark is how current a follower's ledger is known to be, as a read
// index: at time Asked the leader's commit index was Commit; once this
// replica has applied that far, its ledger holds everything committed
// before Asked, so it is at most now-Asked behind. Raft's heartbeats carry
// no commit index, so a replica that was cut off and hears a heartbeat
// again does not know by itself what it missed; asking the leader does.
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

// Asked records the leader's commit index as answered to a question sent
// at asked, and what this replica has applied now.
func (w *Watermark) Asked(asked time.Time, commit, applied uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil || asked.After(w.pending.asked) {
		w.pending = &leaderCommit{asked: asked, commit: commit}
	}
	w.appliedLocked(applied)
}

// Applied records what this replica has applied.
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
// after before now.
func (w *Watermark) Stale(now time.Time, after time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	last, never := w.verified, false
	if last.IsZero() {
		last, never = w.started, true
	}
	if d := now.Sub(last); d > after {
		return &StaleError{For: d, After: after, Never: never}
	}
	return nil
}

// CatchingUp reports the leader's commit index this replica has yet to
// apply, if any.
func (w *Watermark) CatchingUp() (commit uint64, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.pending == nil {
		return 0, false
	}
	return w.pending.commit, true
}
