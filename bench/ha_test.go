package main

import "testing"

// TestHATargets checks that the HA figures are judged against issue 14's
// goals: the ratio, not the absolute rate; the worst kill, not the mean;
// and that errors make a goal not met whatever the figure.
func TestHATargets(t *testing.T) {
	ok := func(perSecond float64) SoakWrites { return SoakWrites{Clients: 8, OK: 100, PerSecond: perSecond} }
	adm := func(p99 float64, errs int) LoadRun { return LoadRun{Rate: targetRate, P99: p99, Errors: errs} }
	tests := map[string]struct {
		ha   *HAResult
		want map[string]*bool // target name → met (nil: not measured)
	}{
		"not run": {
			ha: nil,
			want: map[string]*bool{
				"promotions per second, 3 replicas / single node":              nil,
				"admission p99 at 1000 rps, follower / single node":            nil,
				"failover: leader SIGKILL to the first acknowledged promotion": nil,
				"catch-up of a replica restarted on an empty disk":             nil,
			},
		},
		"every goal met": {
			ha: &HAResult{Single: ok(800), Cluster: ok(400), Admission: []LoadRun{adm(2, 0), adm(2.2, 0)},
				Failovers: []FailoverRun{{Seconds: 2.9}, {Seconds: 1.5}}, CatchUp: &CatchUpRun{Entries: 3000, Rejoined: 3000, Seconds: 2}},
			want: map[string]*bool{
				"promotions per second, 3 replicas / single node":              ptr(true),
				"admission p99 at 1000 rps, follower / single node":            ptr(true),
				"failover: leader SIGKILL to the first acknowledged promotion": ptr(true),
				"catch-up of a replica restarted on an empty disk":             nil,
			},
		},
		"under half, slower follower, one slow kill": {
			ha: &HAResult{Single: ok(800), Cluster: ok(399), Admission: []LoadRun{adm(2, 0), adm(2.3, 0)},
				Failovers: []FailoverRun{{Seconds: 1}, {Seconds: 3.1}}},
			want: map[string]*bool{
				"promotions per second, 3 replicas / single node":              ptr(false),
				"admission p99 at 1000 rps, follower / single node":            ptr(false),
				"failover: leader SIGKILL to the first acknowledged promotion": ptr(false),
				"catch-up of a replica restarted on an empty disk":             nil,
			},
		},
		"an error in a round that is not the median": {
			ha: &HAResult{Single: ok(800), Cluster: ok(400), Admission: []LoadRun{adm(2, 0), adm(2, 0)},
				AdmissionRounds: []LoadRun{adm(2, 0), adm(2, 0), adm(9, 1), adm(2, 0)}},
			want: map[string]*bool{
				"promotions per second, 3 replicas / single node":              ptr(true),
				"admission p99 at 1000 rps, follower / single node":            ptr(false),
				"failover: leader SIGKILL to the first acknowledged promotion": nil,
				"catch-up of a replica restarted on an empty disk":             nil,
			},
		},
		"errors fail fast figures": {
			ha: &HAResult{Single: ok(800), Cluster: SoakWrites{PerSecond: 800, Errors: 1}, Admission: []LoadRun{adm(2, 0), adm(1, 3)}},
			want: map[string]*bool{
				"promotions per second, 3 replicas / single node":              ptr(false),
				"admission p99 at 1000 rps, follower / single node":            ptr(false),
				"failover: leader SIGKILL to the first acknowledged promotion": nil,
				"catch-up of a replica restarted on an empty disk":             nil,
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := map[string]*bool{}
			haTargets(tc.ha, func(name, _, value string, met *bool, note string) {
				got[name] = met
				// The report prints a figure without a verdict as "n/a (note)".
				if met == nil && value != "not measured" && note == "" {
					t.Errorf("%s: %q without a verdict nor a note saying why", name, value)
				}
			})
			if len(got) != len(tc.want) {
				t.Fatalf("got %d targets, want %d", len(got), len(tc.want))
			}
			for n, want := range tc.want {
				g, ok := got[n]
				switch {
				case !ok:
					t.Errorf("%s: missing", n)
				case (g == nil) != (want == nil) || g != nil && *g != *want:
					t.Errorf("%s: met = %v, want %v", n, fmtMet(g), fmtMet(want))
				}
			}
		})
	}
}

func fmtMet(b *bool) string {
	if b == nil {
		return "not measured"
	}
	if *b {
		return "met"
	}
	return "not met"
}
