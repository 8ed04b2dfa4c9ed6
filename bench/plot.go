package main

import (
	"fmt"
	"path/filepath"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// writePlots draws, per system, its latency percentiles by offered rate,
// and one plot of every system's p99 by rate. It returns the file names,
// relative to dir.
func writePlots(dir string, res *Results) ([]string, error) {
	w := res.Webhook
	if len(w.Runs) == 0 {
		return nil, nil
	}
	var files []string
	percentiles := []struct {
		name string
		get  func(LoadRun) float64
	}{
		{"p50", func(r LoadRun) float64 { return r.P50 }},
		{"p90", func(r LoadRun) float64 { return r.P90 }},
		{"p99", func(r LoadRun) float64 { return r.P99 }},
		{"p99.9", func(r LoadRun) float64 { return r.P999 }},
		{"max", func(r LoadRun) float64 { return r.Max }},
	}
	for _, sys := range w.systems() {
		p := newLatencyPlot(fmt.Sprintf("%s: latency by offered rate (%d-entry ledger)", sys, w.Entries))
		var lines []any
		for _, pc := range percentiles {
			lines = append(lines, pc.name, points(w, sys, pc.get))
		}
		if err := plotutil.AddLinePoints(p, lines...); err != nil {
			return files, err
		}
		name := fmt.Sprintf("latency-%s.png", sys)
		if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name)); err != nil {
			return files, err
		}
		files = append(files, name)
	}
	p := newLatencyPlot("p99 latency by offered rate")
	var lines []any
	for _, sys := range w.systems() {
		lines = append(lines, sys, points(w, sys, func(r LoadRun) float64 { return r.P99 }))
	}
	if err := plotutil.AddLinePoints(p, lines...); err != nil {
		return files, err
	}
	name := "p99-by-rate.png"
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(dir, name)); err != nil {
		return files, err
	}
	return append(files, name), nil
}

func newLatencyPlot(title string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "offered rate (requests/s)"
	p.Y.Label.Text = "latency (ms, log scale)"
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

// points are (rate, latency) of one system; a log axis cannot show zero,
// so latencies are floored at a microsecond.
func points(w WebhookResult, sys string, get func(LoadRun) float64) plotter.XYs {
	var xy plotter.XYs
	for _, r := range w.Runs {
		if r.System == sys {
			xy = append(xy, plotter.XY{X: float64(r.Rate), Y: max(get(r), 0.001)})
		}
	}
	return xy
}
