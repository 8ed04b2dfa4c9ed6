package main

import (
	"strings"
	"testing"
)

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
			// The bulk catch-up rows are always there, and never judged.
			for _, size := range []string{"10^5", "10^6"} {
				tc.want["empty-disk catch-up, bulk-loaded ledger of "+size+" entries"] = nil
			}
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

// TestHABulkRows checks what the bulk catch-up rows say: -quick's 10^4
// stands in for 10^5 and says so, and 10^6 says how to measure it unless
// it was.
func TestHABulkRows(t *testing.T) {
	run := func(entries int, quick bool) BulkCatchUp {
		return BulkCatchUp{Entries: entries, Quick: quick, FormedSeconds: 9, CatchUp: CatchUpRun{Entries: uint64(entries), Rejoined: uint64(entries), Seconds: 4.5}}
	}
	const r5, r6 = "empty-disk catch-up, bulk-loaded ledger of 10^5 entries", "empty-disk catch-up, bulk-loaded ledger of 10^6 entries"
	tests := map[string]struct {
		bulk []BulkCatchUp
		want map[string][]string // row → what its value and note say
	}{
		"not run": {want: map[string][]string{r5: {"not measured"}, r6: {"not measured: set BENCH_HA_1E6=1"}}},
		"quick": {bulk: []BulkCatchUp{run(10_000, true)},
			want: map[string][]string{r5: {"at 10^4 in -quick: 4.5 s to ready", "-quick uses 10^4 entries in place of 10^5", "formed by adopting the fixture in 9.0 s"},
				r6: {"not measured: set BENCH_HA_1E6=1", "about 25 min"}}},
		"full with 10^6": {bulk: []BulkCatchUp{run(100_000, false), run(1_000_000, false)},
			want: map[string][]string{r5: {"4.5 s to ready (100000 entries once ready)"}, r6: {"4.5 s to ready (1000000 entries once ready)"}}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got := map[string]string{}
			haBulkTargets(&HAResult{Bulk: tc.bulk}, func(name, _, value string, met *bool, note string) {
				if met != nil {
					t.Errorf("%s judged: it is reported, not asserted", name)
				}
				if _, dup := got[name]; dup {
					t.Errorf("%s twice", name)
				}
				got[name] = value + " | " + note
			})
			if len(got) != len(tc.want) {
				t.Fatalf("rows %v, want %d", got, len(tc.want))
			}
			for row, says := range tc.want {
				for _, s := range says {
					if !strings.Contains(got[row], s) {
						t.Errorf("%s: %q does not say %q", row, got[row], s)
					}
				}
			}
		})
	}
}
