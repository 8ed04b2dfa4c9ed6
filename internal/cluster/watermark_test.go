package cluster_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/cluster"
)

func TestWatermark(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return start.Add(time.Duration(s) * time.Second) }
	after := 10 * time.Second
	type step struct {
		do        func(w *cluster.Watermark)
		now       int
		wantStale string // "" for fresh
	}
	for name, steps := range map[string][]step{
		"never caught up": {
			{now: 0, wantStale: "has not yet caught up with the cluster leader since it started 0s ago"},
			{now: 11, wantStale: "since it started 11s ago"},
			{do: func(w *cluster.Watermark) { w.Asked(at(11), 3, 2) }, now: 11, wantStale: "since it started 11s ago"},
			{do: func(w *cluster.Watermark) { w.Applied(3) }, now: 12},
		},
		"caught up with the leader's commit index": {
			{do: func(w *cluster.Watermark) { w.Asked(at(8), 40, 40) }, now: 17},
			{now: 19, wantStale: "lost contact with the cluster leader for 11s"},
		},
		// Cut off, then healed: hearing the leader again is not enough,
		// the replica must apply what it missed.
		"behind the leader's commit index": {
			{do: func(w *cluster.Watermark) { w.Asked(at(1), 40, 40) }, now: 5},
			{do: func(w *cluster.Watermark) { w.Asked(at(30), 45, 40) }, now: 30, wantStale: "lost contact with the cluster leader for 29s"},
			{do: func(w *cluster.Watermark) { w.Applied(44) }, now: 31, wantStale: "for 30s"},
			{do: func(w *cluster.Watermark) { w.Applied(45) }, now: 31},
		},
		"an older answer does not replace a newer one": {
			{do: func(w *cluster.Watermark) { w.Asked(at(20), 50, 10); w.Asked(at(15), 10, 10) }, now: 21, wantStale: "since it started"},
			{do: func(w *cluster.Watermark) { w.Applied(50) }, now: 29},
		},
		// Under a steady write load the leader is always a little ahead
		// when asked; each answer must still verify the one before it,
		// or a healthy follower goes stale (it did, in a rolling restart
		// under load: TestRollingRestartBehindAService).
		"always a little behind under steady writes": {
			{do: func(w *cluster.Watermark) { w.Asked(at(0), 10, 10) }, now: 1},
			{do: func(w *cluster.Watermark) { w.Asked(at(2), 20, 15) }, now: 3},
			{do: func(w *cluster.Watermark) { w.Asked(at(4), 30, 25) }, now: 5},
			{do: func(w *cluster.Watermark) { w.Asked(at(6), 40, 35) }, now: 7},
			{do: func(w *cluster.Watermark) { w.Asked(at(8), 50, 45) }, now: 9},
			{do: func(w *cluster.Watermark) { w.Asked(at(10), 60, 55) }, now: 11},
			{do: func(w *cluster.Watermark) { w.Asked(at(12), 70, 65) }, now: 13},
		},
		"the leader is current": {
			{do: func(w *cluster.Watermark) { w.Leader(at(30)) }, now: 35},
		},
	} {
		t.Run(name, func(t *testing.T) {
			w := cluster.NewWatermark(start)
			for i, s := range steps {
				if s.do != nil {
					s.do(w)
				}
				err := w.Stale(at(s.now), after)
				switch {
				case s.wantStale == "" && err != nil:
					t.Fatalf("step %d: %v, want fresh", i, err)
				case s.wantStale != "" && (err == nil || !strings.Contains(err.Error(), s.wantStale) || !errors.Is(err, cluster.ErrStale)):
					t.Fatalf("step %d: %v, want stale %q", i, err, s.wantStale)
				}
			}
		})
	}
}
