package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Runner runs the scenarios of one plan and fills res.
type Runner struct {
	plan   Plan
	work   string // cache directory, kept between runs
	out    string // this run's results directory
	opaBin string
	only   map[string]bool
	log    *slog.Logger
	res    *Results

	ws *workspace
}

var scenarios = []string{"decision", "webhook", "promotion", "scale", "memory", "continuous", "ha", "web"}

func parseOnly(s string) map[string]bool {
	if s == "" {
		return nil
	}
	m := map[string]bool{}
	for _, f := range strings.Split(s, ",") {
		m[strings.TrimSpace(f)] = true
	}
	return m
}

func (r *Runner) enabled(name string) bool { return r.only == nil || r.only[name] }

// Run prepares the workspace, runs every enabled scenario, and writes the
// results even when a scenario failed, so that a partial run still reports
// what it measured.
func (r *Runner) Run(ctx context.Context) error {
	for name := range r.only {
		if !slices.Contains(scenarios, name) {
			return fmt.Errorf("bench: unknown scenario %q (known: %s)", name, strings.Join(scenarios, ", "))
		}
	}
	if err := os.MkdirAll(r.out, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r.log.Info("bench starting", "mode", r.plan.Mode, "out", r.out, "work", r.work)
	ws, err := prepareWorkspace(ctx, r.work, r.log)
	if err != nil {
		return err
	}
	r.ws = ws

	// The memory scenario builds its own fixture; the others share these.
	var sizes []int
	if r.enabled("decision") || r.enabled("webhook") || r.enabled("promotion") || r.enabled("scale") {
		sizes = slices.Clone(r.plan.ScaleSizes)
		if !slices.Contains(sizes, r.plan.WebhookLedger) {
			sizes = append(sizes, r.plan.WebhookLedger)
		}
	}
	slices.Sort(sizes)
	for _, n := range sizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		t0 := time.Now()
		built, err := ws.fixture(ctx, n)
		if err != nil {
			return err
		}
		if built {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("built the %d-entry ledger fixture in %s (cached for later runs)", n, time.Since(t0).Round(time.Second)))
		}
	}

	var errs []error
	step := func(name string, fn func(context.Context) error) {
		if !r.enabled(name) || ctx.Err() != nil {
			return
		}
		t0 := time.Now()
		r.log.Info("scenario starting", "scenario", name)
		if err := fn(ctx); err != nil {
			r.log.Error("scenario failed", "scenario", name, "err", err)
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("scenario %s failed: %v", name, err))
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
		r.log.Info("scenario done", "scenario", name, "took", time.Since(t0).Round(time.Millisecond))
	}
	step("decision", r.decision)
	step("scale", r.scale)
	step("promotion", r.promotion)
	step("webhook", r.webhook)
	step("memory", r.memory)
	step("continuous", r.continuous)
	step("ha", r.ha)
	step("web", r.web)

	r.res.Finished = time.Now().UTC()
	r.res.Targets = evaluateTargets(r.res)
	if err := r.write(); err != nil {
		errs = append(errs, err)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// write saves results.json, REPORT.md and the plots, and prints the report.
func (r *Runner) write() error {
	if err := writeJSON(filepath.Join(r.out, "results.json"), r.res); err != nil {
		return err
	}
	plots, err := writePlots(r.out, r.res)
	if err != nil {
		r.log.Error("plots failed", "err", err)
		r.res.Notes = append(r.res.Notes, "plots failed: "+err.Error())
	}
	report := renderReport(r.res, plots)
	if err := os.WriteFile(filepath.Join(r.out, "REPORT.md"), []byte(report), 0o644); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	fmt.Println(report)
	fmt.Printf("results in %s\n", r.out)
	return nil
}

// buildStagegate compiles the binary under test into dir, so that serve
// runs as its own process exactly as deployed.
func buildStagegate(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "stagegate")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", bin, "./cmd/stagegate")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bench: build stagegate (run from the repository root): %w", err)
	}
	return bin, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
