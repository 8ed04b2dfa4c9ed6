package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// SoakResult is soak.json. Latencies are in ms, sizes in bytes, times of
// samples in seconds from the start of the load.
type SoakResult struct {
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
	Duration  Duration  `json:"duration"`
	Entries   int       `json:"fixtureEntries"`
	GoVersion string    `json:"goVersion"`
	CPUs      int       `json:"cpus"`
	LoadAvg1  float64   `json:"loadAvg1AtEnd"`

	Admission   LoadRun     `json:"admission"`
	Promotions  SoakWrites  `json:"promotions"`
	Revocations SoakWrites  `json:"revocations"`
	SampleEvery Duration    `json:"sampleEvery"`
	Window      Duration    `json:"window"`
	Samples     []MemSample `json:"samples"`
	Warmup      Duration    `json:"warmup"`
	RSS         SeriesStats `json:"rss"`
	RSSAnon     SeriesStats `json:"rssAnon"`
	RSSFile     SeriesStats `json:"rssFile"`
	HeapInuse   SeriesStats `json:"heapInuse"`
	HeapGoal    SeriesStats `json:"heapGoal"`
	PeakRSS     int64       `json:"peakRSSBytes"`

	LedgerSize   uint64  `json:"ledgerSize"`
	ExpectedSize uint64  `json:"expectedLedgerSize"`
	VerifyOK     bool    `json:"verifyOK"`
	VerifySecs   float64 `json:"verifySeconds"`
	VerifyOutput string  `json:"verifyOutput"`

	FlatRule   string   `json:"flatRule"`
	FlatMemory bool     `json:"flatMemory"`
	ZeroErrors bool     `json:"zeroErrors"`
	Notes      []string `json:"notes,omitempty"`
}

// SoakWrites are the promotion (or revocation) requests of the soak.
type SoakWrites struct {
	Clients      int      `json:"clients"`
	OK           int      `json:"ok"`
	Errors       int      `json:"errors"`
	ErrorSamples []string `json:"errorSamples,omitempty"`
	PerSecond    float64  `json:"perSecond"`
	P50          float64  `json:"p50Ms"`
	P99          float64  `json:"p99Ms"`
	Max          float64  `json:"maxMs"`
}

// MemSample is serve's memory at one moment.
type MemSample struct {
	Seconds float64 `json:"seconds"`
	RSS     int64   `json:"rssBytes"`
	// RSSAnon and RSSFile split RSS: a leak grows the anonymous part,
	// while the bbolt mmap grows the file part as promotions grow the
	// ledger file.
	RSSAnon   int64 `json:"rssAnonBytes"`
	RSSFile   int64 `json:"rssFileBytes"`
	HeapInuse int64 `json:"heapInuseBytes"`
	// HeapGoal is the GC's next target (go_memstats_next_gc_bytes): about
	// twice the live heap after the last GC at GOGC=100, so it tells a
	// live heap that keeps growing from garbage between cycles.
	HeapGoal int64 `json:"heapGoalBytes"`
}

// SeriesStats summarise one memory series.
type SeriesStats struct {
	Min      int64 `json:"min"`
	FirstAvg int64 `json:"firstWindowAvg"`
	LastAvg  int64 `json:"lastWindowAvg"`
	Max      int64 `json:"max"`
}

// refStart is where the reference window begins: after the first window
// when the run is long enough to have three, else at the start.
func refStart(win, end float64) float64 {
	if end >= 3*win {
		return win
	}
	return 0
}

// summarise fills the series statistics and the verdicts.
func (r *SoakResult) summarise() {
	win, end := r.Window.Std().Seconds(), 0.0
	if len(r.Samples) > 0 {
		end = r.Samples[len(r.Samples)-1].Seconds
	}
	stats := func(get func(MemSample) int64) SeriesStats {
		var s SeriesStats
		var firstSum, lastSum, firstN, lastN int64
		for i, m := range r.Samples {
			v := get(m)
			if i == 0 || v < s.Min {
				s.Min = v
			}
			s.Max = max(s.Max, v)
			// The reference window is the second one: the first holds the
			// ramp from an idle process to its working set under load.
			if from := refStart(win, end); m.Seconds > from && m.Seconds <= from+win {
				firstSum, firstN = firstSum+v, firstN+1
			}
			if m.Seconds >= end-win {
				lastSum, lastN = lastSum+v, lastN+1
			}
		}
		if firstN > 0 {
			s.FirstAvg = firstSum / firstN
		}
		if lastN > 0 {
			s.LastAvg = lastSum / lastN
		}
		return s
	}
	r.RSS = stats(func(m MemSample) int64 { return m.RSS })
	r.RSSAnon = stats(func(m MemSample) int64 { return m.RSSAnon })
	r.RSSFile = stats(func(m MemSample) int64 { return m.RSSFile })
	r.HeapInuse = stats(func(m MemSample) int64 { return m.HeapInuse })
	r.HeapGoal = stats(func(m MemSample) int64 { return m.HeapGoal })
	// The rule reads anonymous RSS: the file-backed part is the mapped
	// ledger, which grows with every promotion by design, and a leak shows
	// in the anonymous part and the heap.
	r.FlatRule = fmt.Sprintf("flat memory: mean anonymous RSS of the last %s ≤ %.1f × its mean in the %s after ramp-up",
		r.Window.Std(), soakFlatFactor, r.Window.Std())
	r.FlatMemory = r.RSSAnon.FirstAvg > 0 && float64(r.RSSAnon.LastAvg) <= soakFlatFactor*float64(r.RSSAnon.FirstAvg)
	r.ZeroErrors = r.Admission.Errors == 0 && r.Admission.Requests > 0 && r.Promotions.Errors == 0 &&
		r.Promotions.OK > 0 && r.Revocations.Errors == 0
	if r.Admission.Achieved < 0.95*soakAdmissionRate {
		r.Notes = append(r.Notes, fmt.Sprintf("admission achieved %.0f/s of the %d/s offered: the machine could not keep up", r.Admission.Achieved, soakAdmissionRate))
	}
}

// failures lists the verdicts that failed.
func (r *SoakResult) failures() []string {
	var out []string
	if !r.ZeroErrors {
		out = append(out, "errors during the soak")
	}
	if !r.FlatMemory {
		out = append(out, "memory not flat")
	}
	if !r.VerifyOK {
		out = append(out, "ledger verify failed")
	}
	if r.LedgerSize != r.ExpectedSize {
		out = append(out, fmt.Sprintf("ledger has %d entries, want %d", r.LedgerSize, r.ExpectedSize))
	}
	return out
}

// write saves soak.json, memory.png and SOAK.md, prints SOAK.md, and
// returns an error naming each failed verdict.
func (r *SoakResult) write(out string, log *slog.Logger) error {
	if err := writeSoakPlot(filepath.Join(out, "memory.png"), r); err != nil {
		log.Error("plot failed", "err", err)
		r.Notes = append(r.Notes, "plot failed: "+err.Error())
	}
	if err := writeJSON(filepath.Join(out, "soak.json"), r); err != nil {
		return err
	}
	md := r.render()
	if err := os.WriteFile(filepath.Join(out, "SOAK.md"), []byte(md), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Println(md)
	fmt.Printf("results in %s\n", out)
	if f := r.failures(); len(f) > 0 {
		return fmt.Errorf("bench: soak failed: %s", strings.Join(f, "; "))
	}
	return nil
}

func (r *SoakResult) render() string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	verdict := func(ok bool) string { return map[bool]string{true: "**pass**", false: "**FAIL**"}[ok] }
	p("# stagegate soak\n\n")
	p("Run %s, %s of load on the %d-entry fixture ledger (a writable copy). %s, %d CPUs; the load generator and "+
		"the registry share the machine with serve. Load average at the end: %.1f.\n\n",
		r.Started.Format(time.RFC3339), r.Duration.Std(), r.Entries, r.GoVersion, r.CPUs, r.LoadAvg1)
	p("## Verdicts\n\n| check | result |\n| --- | --- |\n")
	p("| zero errors (admission, promotions, revocations) | %s |\n", verdict(r.ZeroErrors))
	p("| %s | %s (%s → %s) |\n", r.FlatRule, verdict(r.FlatMemory), fmtMB(r.RSSAnon.FirstAvg), fmtMB(r.RSSAnon.LastAvg))
	p("| `stagegate ledger verify` of the soaked ledger | %s (%.1f s) |\n", verdict(r.VerifyOK), r.VerifySecs)
	p("| ledger size = fixture + promotions + revocations | %s (%d, want %d) |\n", verdict(r.LedgerSize == r.ExpectedSize), r.LedgerSize, r.ExpectedSize)
	a := r.Admission
	p("\n## Admission\n\n`POST /admission/validate/%s`, Pod and Deployment reviews in turn, vegeta constant %d/s, TLS 1.3. Latencies in ms.\n\n",
		benchStage, soakAdmissionRate)
	p("| requests | achieved rps | errors | p50 | p99 | p99.9 | max |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	p("| %d | %.0f | %d | %.2f | %.2f | %.2f | %.2f |\n", a.Requests, a.Achieved, a.Errors, a.P50, a.P99, a.P999, a.Max)
	p("\n## Promotions and revocations\n\n%d clients (one identity each) promote new digests from the bench's in-process registry to the first stage "+
		"at %d/s in all over HTTPS, wanting 201; each revokes every %d-th digest it promoted, wanting 201. Latencies in ms.\n\n",
		r.Promotions.Clients, soakPromoteRate, soakRevokeEvery)
	p("| kind | ok | errors | per second | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, k := range []struct {
		name string
		w    SoakWrites
	}{{"promotion", r.Promotions}, {"revocation", r.Revocations}} {
		p("| %s | %d | %d | %.1f | %.1f | %.1f | %.1f |\n", k.name, k.w.OK, k.w.Errors, k.w.PerSecond, k.w.P50, k.w.P99, k.w.Max)
	}
	p("\n## Memory of serve\n\nSampled every %s: RSS from `/proc/<pid>/status` (VmRSS), heap from `/metrics` "+
		"(`go_memstats_heap_inuse_bytes`), after a %s warm-up at the admission rate. Windows of %s. Peak RSS (VmHWM) at exit: %s.\n\n",
		r.SampleEvery.Std(), r.Warmup.Std(), r.Window.Std(), fmtMB(r.PeakRSS))
	p("| series | min | reference-window avg | last-window avg | max |\n| --- | ---: | ---: | ---: | ---: |\n")
	for _, s := range []struct {
		name string
		s    SeriesStats
	}{{"RSS", r.RSS}, {"RSS anonymous", r.RSSAnon}, {"RSS file-backed (bbolt mmap, binary)", r.RSSFile}, {"Go heap in use", r.HeapInuse}, {"GC heap goal (≈ 2 × live heap)", r.HeapGoal}} {
		p("| %s | %s | %s | %s | %s |\n", s.name, fmtMB(s.s.Min), fmtMB(s.s.FirstAvg), fmtMB(s.s.LastAvg), fmtMB(s.s.Max))
	}
	p("\nThe ledger file grew from the fixture's %d entries to %d; its pages are mapped, so the file-backed part of RSS "+
		"grows with it. A leak shows in the anonymous part and the heap.\n", r.Entries, r.LedgerSize)
	p("\n![RSS and heap over time](memory.png)\n")
	p("\n## Ledger verify\n\n```\n%s\n```\n", r.VerifyOutput)
	var samples []string
	for _, s := range [][]string{a.ErrorSamples, r.Promotions.ErrorSamples, r.Revocations.ErrorSamples} {
		samples = append(samples, s...)
	}
	if len(samples) > 0 {
		p("\n## Error samples\n\n")
		for _, s := range samples {
			p("- %s\n", s)
		}
	}
	if len(r.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range r.Notes {
			p("- %s\n", n)
		}
	}
	return b.String()
}

// writeSoakPlot draws serve's RSS and heap in use over the soak.
func writeSoakPlot(path string, r *SoakResult) error {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("stagegate serve memory under soak (%d adm/s + %d promotions/s)", soakAdmissionRate, soakPromoteRate)
	p.X.Label.Text = "time (minutes)"
	p.Y.Label.Text = "MB"
	p.Y.Min = 0
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	var rss, anon, heap, goal plotter.XYs
	for _, s := range r.Samples {
		x := s.Seconds / 60
		rss = append(rss, plotter.XY{X: x, Y: float64(s.RSS) / (1 << 20)})
		anon = append(anon, plotter.XY{X: x, Y: float64(s.RSSAnon) / (1 << 20)})
		heap = append(heap, plotter.XY{X: x, Y: float64(s.HeapInuse) / (1 << 20)})
		goal = append(goal, plotter.XY{X: x, Y: float64(s.HeapGoal) / (1 << 20)})
	}
	if err := plotutil.AddLinePoints(p, "RSS (VmRSS)", rss, "RSS anonymous", anon, "Go heap in use", heap, "GC heap goal", goal); err != nil {
		return err
	}
	return p.Save(7*vg.Inch, 4.5*vg.Inch, path)
}
