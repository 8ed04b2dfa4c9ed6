package main

import (
	"strings"
	"testing"
)

// TestCeilingTarget: the ceiling row is met only against a floor whose
// ceiling the ladder found, and says why otherwise.
func TestCeilingTarget(t *testing.T) {
	held := func(system string, rate int) LoadRun {
		return LoadRun{System: system, Rate: rate, Achieved: float64(rate), P99: 1}
	}
	failed := func(system string, rate int) LoadRun {
		return LoadRun{System: system, Rate: rate, Achieved: float64(rate) / 2, P99: 50}
	}
	tests := map[string]struct {
		runs      []LoadRun
		met       *bool
		wantValue string
	}{
		"no runs": {wantValue: "not measured"},
		"the floor held everything tried": {
			runs:      []LoadRun{held(sysFloor, 2000), held(sysStagegate, 2000), held(sysFloor, 4000), held(sysStagegate, 4000)},
			wantValue: "held every rate up to 4000 rps",
		},
		"stagegate holds 50% of the floor's ceiling": {
			runs: []LoadRun{held(sysFloor, 2000), held(sysStagegate, 2000), held(sysFloor, 4000), failed(sysStagegate, 4000),
				failed(sysFloor, 8000), failed(sysStagegate, 8000)},
			met: ptr(false), wantValue: "50% (2000 vs 4000 rps)",
		},
		"stagegate holds the floor's ceiling": {
			runs: []LoadRun{held(sysFloor, 4000), held(sysStagegate, 4000), failed(sysFloor, 8000), failed(sysStagegate, 8000)},
			met:  ptr(true), wantValue: "100% (4000 vs 4000 rps)",
		},
		"the floor held nothing": {
			runs: []LoadRun{failed(sysFloor, 500), held(sysStagegate, 500)}, wantValue: "held none of the rates",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, _, value, met, _ := ceilingTarget(WebhookResult{Runs: tc.runs})
			if !strings.Contains(value, tc.wantValue) {
				t.Errorf("value %q, want it to say %q", value, tc.wantValue)
			}
			if (met == nil) != (tc.met == nil) || (met != nil && *met != *tc.met) {
				t.Errorf("met %v, want %v", deref(met), deref(tc.met))
			}
		})
	}
}

func deref(b *bool) any {
	if b == nil {
		return nil
	}
	return *b
}

// TestLadderHalvesTheGap: the rates tried after the doubling close in on
// each system's ceiling, and a lucky run above a failure is not a ceiling.
func TestLadderHalvesTheGap(t *testing.T) {
	held := func(rate int) LoadRun { return LoadRun{System: sysFloor, Rate: rate, Achieved: float64(rate), P99: 1} }
	failed := func(rate int) LoadRun { return LoadRun{System: sysFloor, Rate: rate, Achieved: float64(rate), P99: 30} }
	tests := map[string]struct {
		runs        []LoadRun
		wantCeiling int
		wantFound   bool
		wantNext    int
	}{
		"nothing failed":                        {runs: []LoadRun{held(1000), held(2000)}, wantCeiling: 2000},
		"halfway to the failure":                {runs: []LoadRun{held(1000), failed(2000)}, wantCeiling: 1000, wantFound: true, wantNext: 1500},
		"rounded to the step":                   {runs: []LoadRun{held(1000), failed(2000), failed(1500), held(1250)}, wantCeiling: 1250, wantFound: true, wantNext: 1350},
		"a step apart":                          {runs: []LoadRun{held(1000), failed(1050)}, wantCeiling: 1000, wantFound: true},
		"a lucky run above failure":             {runs: []LoadRun{held(500), failed(1000), held(2000)}, wantCeiling: 500, wantFound: true, wantNext: 750},
		"failed the lowest rate, look below it": {runs: []LoadRun{failed(500)}, wantFound: true, wantNext: 250},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			w := WebhookResult{Runs: tc.runs}
			got, found := w.ceiling(sysFloor)
			if got != tc.wantCeiling || found != tc.wantFound {
				t.Errorf("ceiling %d (found %v), want %d (found %v)", got, found, tc.wantCeiling, tc.wantFound)
			}
			if next := w.between(sysFloor); next != tc.wantNext {
				t.Errorf("next rate %d, want %d", next, tc.wantNext)
			}
		})
	}
}

// TestServeRSSTarget: serve's memory row is judged on its anonymous peak,
// not on VmHWM, which holds the startup verify's read of the whole file.
func TestServeRSSTarget(t *testing.T) {
	const mb = 1 << 20
	tests := map[string]struct {
		w         WebhookResult
		met       *bool
		wantValue string
	}{
		"not sampled": {w: WebhookResult{Entries: targetEntries, ServePeakRSS: 3000 * mb}, wantValue: "not measured"},
		"file pages only": {
			w:   WebhookResult{Entries: targetEntries, ServePeakRSS: 3119 * mb, ServeReadyRSS: 3100 * mb, ServePeakAnon: 90 * mb, ServeRSS: 120 * mb},
			met: ptr(true), wantValue: "90.0 MB anonymous at 1000000 entries",
		},
		"anonymous over": {
			w:   WebhookResult{Entries: targetEntries, ServePeakRSS: 400 * mb, ServePeakAnon: 200 * mb},
			met: ptr(false), wantValue: "200.0 MB anonymous",
		},
		"smaller ledger": {
			w:         WebhookResult{Entries: 10_000, ServePeakRSS: 100 * mb, ServePeakAnon: 60 * mb},
			wantValue: "60.0 MB anonymous at 10000 entries",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var row TargetResult
			for _, r := range evaluateTargets(&Results{Webhook: tc.w}) {
				if r.Name == "peak RSS of serve" {
					row = r
				}
			}
			if !strings.Contains(row.Value, tc.wantValue) {
				t.Errorf("value %q, want it to contain %q", row.Value, tc.wantValue)
			}
			if (row.Met == nil) != (tc.met == nil) || row.Met != nil && *row.Met != *tc.met {
				t.Errorf("met = %v, want %v", row.Met, tc.met)
			}
		})
	}
}
