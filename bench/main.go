// Command bench is `make bench`: stagegate's performance suite. It runs every
// scenario in one process, one after the other, so that the ratios between
// stagegate, the OPA baseline and the floor server come from the same noisy
// machine at the same time. It writes bench/results/<UTC timestamp>/ with
// results.json, REPORT.md and plots, and prints the report.
//
// BENCH_QUICK=1 (or -quick) runs a short version of about a minute with
// smaller ledgers. See bench/README.md.
//
// -soak (BENCH_SOAK=1) runs the mixed-load soak of issue 6 instead, for
// BENCH_SOAK_DURATION (default 10m), and writes bench/results/soak-<UTC
// timestamp>/.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Plan is what one run measures; quick and full differ only in sizes and
// durations.
type Plan struct {
	Mode string `json:"mode"`
	// WebhookLedger is the ledger size behind the webhook and in-process
	// decision scenarios.
	WebhookLedger int `json:"webhookLedger"`
	// MemoryEntries is the size of the memory scenario's ledger of
	// maximum-size entries.
	MemoryEntries int `json:"memoryEntries"`
	// ScaleSizes are the ledger sizes of the ledger-scale scenario.
	ScaleSizes []int `json:"scaleSizes"`
	// Rates are the offered request rates per second.
	Rates []int `json:"rates"`
	// RateDuration is how long each rate is held, per system.
	RateDuration Duration `json:"rateDuration"`
	// Warmup is a short attack before each measured one.
	Warmup Duration `json:"warmup"`
	// PromoteClients and PromoteDuration shape the promotion scenario.
	PromoteClients  int      `json:"promoteClients"`
	PromoteDuration Duration `json:"promoteDuration"`
	// BenchTime is testing.B's -benchtime for in-process figures.
	BenchTime Duration `json:"benchTime"`
	// HAImages are pushed for the HA section, one per promotion; HAKills
	// is how many times it SIGKILLs the leader.
	HAImages int `json:"haImages"`
	HAKills  int `json:"haKills"`
	// HABulk are the ledger sizes of the HA section's bulk-loaded
	// empty-disk catch-ups (10^6 only with BENCH_HA_1E6=1).
	HABulk []int `json:"haBulk"`
}

func quickPlan() Plan {
	return Plan{
		Mode: "quick", WebhookLedger: 10_000, MemoryEntries: 5_000, ScaleSizes: []int{10_000, 100_000},
		Rates: []int{500, 1000, 2000}, RateDuration: Duration(3 * time.Second), Warmup: Duration(time.Second),
		PromoteClients: 8, PromoteDuration: Duration(3 * time.Second), BenchTime: Duration(300 * time.Millisecond),
		HAImages: 7000, HAKills: 1, HABulk: []int{10_000},
	}
}

func fullPlan() Plan {
	return Plan{
		Mode: "full", WebhookLedger: 1_000_000, MemoryEntries: 20_000, ScaleSizes: []int{10_000, 100_000, 1_000_000},
		Rates: []int{500, 1000, 2000}, RateDuration: Duration(20 * time.Second), Warmup: Duration(3 * time.Second),
		PromoteClients: 16, PromoteDuration: Duration(15 * time.Second), BenchTime: Duration(2 * time.Second),
		HAImages: 34000, HAKills: 3, HABulk: []int{100_000},
	}
}

func main() {
	var (
		quick   = flag.Bool("quick", envBool("BENCH_QUICK"), "short run of about a minute (also BENCH_QUICK=1)")
		outRoot = flag.String("out", envOr("BENCH_OUT", filepath.Join("bench", "results")), "results root; a <UTC timestamp> directory is made inside (also BENCH_OUT)")
		workDir = flag.String("work", envOr("BENCH_WORK", filepath.Join("bench", "results", "tmp")), "cache of keys, certificates and ledger fixtures, kept between runs (also BENCH_WORK)")
		opaBin  = flag.String("opa", envOr("BENCH_OPA", filepath.Join("bin", "opa")), "opa binary for the baseline (built by `hack/tools.sh opa`)")
		only    = flag.String("only", os.Getenv("BENCH_ONLY"), "comma-separated scenarios to run (decision,webhook,promotion,scale,memory,continuous,ha,web); default all")
		soak    = flag.Bool("soak", envBool("BENCH_SOAK"), "run the mixed-load soak instead of the suite (also BENCH_SOAK=1)")
		soakFor = flag.String("soak-duration", envOr("BENCH_SOAK_DURATION", "10m"), "how long the soak's load lasts (also BENCH_SOAK_DURATION)")
		floor   = flag.String("floor", "", "internal: serve the floor server on this address (used by the suite itself)")
		cert    = flag.String("floor-cert", "", "internal: floor server certificate")
		key     = flag.String("floor-key", "", "internal: floor server key")
	)
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if *floor != "" {
		if err := serveFloor(ctx, *floor, *cert, *key); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}

	if *soak {
		d, err := time.ParseDuration(*soakFor)
		if err != nil || d < 10*time.Second {
			fmt.Fprintf(os.Stderr, "bench: soak duration %q: want a Go duration of at least 10s\n", *soakFor)
			os.Exit(2)
		}
		out := filepath.Join(*outRoot, "soak-"+time.Now().UTC().Format("20060102T150405Z"))
		if err := runSoak(ctx, *workDir, out, d, logger); err != nil {
			logger.Error("soak failed", "err", err)
			os.Exit(1)
		}
		return
	}

	plan := fullPlan()
	if *quick {
		plan = quickPlan()
	}
	if envBool(haBulkEnv) {
		plan.HABulk = append(plan.HABulk, haBulkMillion)
	}
	start := time.Now().UTC()
	out := filepath.Join(*outRoot, start.Format("20060102T150405Z"))
	r := &Runner{
		plan: plan, work: *workDir, out: out, opaBin: *opaBin, log: logger,
		only: parseOnly(*only),
		res: &Results{
			Started: start, Plan: plan, GoVersion: runtime.Version(), CPUs: runtime.NumCPU(),
			GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		},
	}
	if err := r.Run(ctx); err != nil {
		logger.Error("bench failed", "err", err)
		os.Exit(1)
	}
}

func envBool(name string) bool {
	b, _ := strconv.ParseBool(os.Getenv(name))
	return b
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Duration prints as "3s" in results.json.
type Duration time.Duration

// MarshalText writes the duration as a string.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Std is the time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
