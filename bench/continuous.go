package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// ContinuousResult is the continuous-validation scenario: the figures of
// internal/inventory's TestScale (ScaleResult there), against a real
// kube-apiserver with 10,000 pods in 100 namespaces.
type ContinuousResult struct {
	Pods              int     `json:"pods"`
	Namespaces        int     `json:"namespaces"`
	RevokedPods       int     `json:"revokedPods"`
	CreateSeconds     float64 `json:"createSeconds"`
	EvaluateSeconds   float64 `json:"evaluateSeconds"`
	SweepSeconds      float64 `json:"sweepSeconds"`
	RevocationSeconds float64 `json:"revocationSeconds"`
	ExtraHeapBytes    int64   `json:"extraHeapBytes"`
}

// Goals of issue 15.
const (
	cvRevocationGoal = 5 * time.Second
	cvSweepGoal      = 10 * time.Second
	cvHeapGoal       = 100 << 20
)

// continuous runs TestScale (STAGEGATE_SCALE=1) as its own `go test`, which
// starts envtest's kube-apiserver and etcd from bin/k8s, and reads its
// figures. The test asserts only that the answers are right.
func (r *Runner) continuous(ctx context.Context) error {
	var res ContinuousResult
	if err := r.figuresTest(ctx, "continuous", "./internal/inventory/", "TestScale", "STAGEGATE_SCALE", 20*time.Minute, &res); err != nil {
		return err
	}
	r.res.Continuous = &res
	return nil
}

// figuresTest runs test of pkg as its own `go test` with env=1 (and
// env_OUT the file it writes its figures to, as JSON) and reads them into
// v. Such a test asserts only that its answers are right; its log goes to
// logs/name.log.
func (r *Runner) figuresTest(ctx context.Context, name, pkg, test, env string, timeout time.Duration, v any) error {
	logs := filepath.Join(r.out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	out, err := filepath.Abs(filepath.Join(r.out, name+".json"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	log, err := os.Create(filepath.Join(logs, name+".log"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer log.Close()
	cmd := exec.CommandContext(ctx, "go", "test", "-count=1", "-timeout="+timeout.String(), "-run=^"+test+"$", "-v", pkg)
	cmd.Env = append(os.Environ(), env+"=1", env+"_OUT="+out, "CI=true")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("bench: %s failed (see logs/%s.log): %w", test, name, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return fmt.Errorf("bench: %s wrote no figures: %w", test, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("bench: %s: %w", out, err)
	}
	return nil
}

// continuousTargets are issue 15's goals next to the figures.
func continuousTargets(c *ContinuousResult, add func(name, goal, value string, met *bool, note string)) {
	const (
		rev   = "revocation reaching 1000 running pods, until every report says so"
		sweep = "full sweep of 10,000 pods in 100 namespaces"
		heap  = "continuous validation's extra heap at 10,000 pods"
	)
	if c == nil {
		add(rev, "≤ 5 s", "not measured", nil, "")
		add(sweep, "≤ 10 s", "not measured", nil, "")
		add(heap, "≤ 100 MB", "not measured", nil, "")
		return
	}
	add(rev, "≤ 5 s", fmt.Sprintf("%.2f s for %d pods", c.RevocationSeconds, c.RevokedPods),
		ptr(c.RevocationSeconds <= cvRevocationGoal.Seconds()),
		fmt.Sprintf("baseline: a leader's full sweep, %.2f s; the revocation re-evaluates only the namespaces where the digest runs", c.SweepSeconds))
	add(sweep, "≤ 10 s", fmt.Sprintf("%.2f s (a leader: evaluation and every report written)", c.SweepSeconds),
		ptr(c.SweepSeconds <= cvSweepGoal.Seconds()),
		fmt.Sprintf("a follower's first evaluation, informers' list included: %.2f s", c.EvaluateSeconds))
	add(heap, "≤ 100 MB", fmtMB(c.ExtraHeapBytes), ptr(c.ExtraHeapBytes <= cvHeapGoal),
		"heap in use after a GC, less that before the controller was made: informer caches (stripped pods), inventory, reports")
}
