package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// System names in the results.
const (
	sysStagegate = "stagegate"
	sysOPA       = "opa"
	sysFloor     = "floor"
)

// webhook runs scenarios 2, 3 and 4: stagegate serve, the OPA server and
// the floor server, each its own process with the same certificate, all
// up at once, attacked in turn at each rate with the same bodies and the
// same client, so that they share the machine's noise.
func (r *Runner) webhook(ctx context.Context) error {
	n := r.plan.WebhookLedger
	bodies, err := reviewBodies(n)
	if err != nil {
		return err
	}
	tlsCfg, err := clientTLS(filepath.Join(r.ws.certDir, "ca.crt"))
	if err != nil {
		return err
	}
	cert, key := filepath.Join(r.ws.certDir, "tls.crt"), filepath.Join(r.ws.certDir, "tls.key")
	logs := filepath.Join(r.out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}

	var procs []*proc
	defer func() {
		for _, p := range procs {
			p.stop()
		}
	}()

	// stagegate serve on the n-entry fixture.
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(r.ws.dir, fmt.Sprintf("serve-%d.yaml", n))
	if _, err := r.ws.config(r.ws.fixtureDir(n), addr, cfgPath); err != nil {
		return err
	}
	sg, err := startProc(ctx, sysStagegate, filepath.Join(logs, "stagegate.log"), r.ws.bin, "serve", "--config", cfgPath, "--log-level", "warn")
	if err != nil {
		return err
	}
	procs = append(procs, sg)
	sg.target = "https://" + addr + "/admission/validate/" + benchStage
	sg.health = "https://" + addr + "/readyz"

	// The floor: this very binary, re-executed.
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if addr, err = freeAddr(); err != nil {
		return err
	}
	fl, err := startProc(ctx, sysFloor, filepath.Join(logs, "floor.log"), self, "-floor", addr, "-floor-cert", cert, "-floor-key", key)
	if err != nil {
		return err
	}
	procs = append(procs, fl)
	fl.target = "https://" + addr + "/admission/validate/" + benchStage
	fl.health = "https://" + addr + "/healthz"

	// OPA with the same promotions as data.
	var op *proc
	if !exists(r.opaBin) {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("OPA baseline skipped: %s not found (run `hack/tools.sh opa`)", r.opaBin))
	} else {
		dataPath := filepath.Join(r.ws.fixtureDir(n), "opa-promotions.json")
		if err := writeOPAData(dataPath, n); err != nil {
			return err
		}
		if addr, err = freeAddr(); err != nil {
			return err
		}
		policy, _ := filepath.Abs(filepath.Join("bench", "opa", "admission.rego"))
		op, err = startProc(ctx, sysOPA, filepath.Join(logs, "opa.log"), r.opaBin, "run", "--server",
			"--addr", addr, "--tls-cert-file", cert, "--tls-private-key-file", key,
			"--log-level", "error", "--disable-telemetry", policy, dataPath)
		if err != nil {
			return err
		}
		procs = append(procs, op)
		op.target = "https://" + addr + "/v0/data/stagegate/bench/validate/" + benchStage
		op.health = "https://" + addr + "/health"
	}

	systems := []*proc{fl, sg}
	if op != nil {
		systems = append(systems, op)
	}
	for _, p := range systems {
		if err := p.waitReady(ctx, tlsCfg, 5*time.Minute); err != nil {
			return err
		}
		for _, b := range bodies {
			if err := checkAnswer(ctx, tlsCfg, p.target, b); err != nil {
				return err
			}
		}
		r.log.Info("server ready", "system", p.name, "target", p.target)
	}
	r.res.Webhook.Entries = n
	// serve's VmHWM once ready already holds the startup verify's pass
	// over the whole file (ledger.WithStartupVerify: a read-only mapping
	// of its own, closed before serving), 3 GB of clean file pages at
	// 10^6 entries; its anonymous memory is what a limit must budget.
	r.res.Webhook.ServeReadyRSS = sg.peakRSS()
	stopAnon := sampleAnon(sg.pid(), rssAnon(sg.pid()))
	defer stopAnon()
	r.res.Webhook.BodyBytes = map[string]int{}
	for _, b := range bodies {
		r.res.Webhook.BodyBytes[b.Name] = len(b.JSON)
	}

	clients := map[string]*http.Client{}
	for _, p := range systems {
		clients[p.name] = newClient(tlsCfg)
	}
	// Rates outermost: each system sees each rate at nearly the same time.
	atRate := func(rate int, systems ...*proc) error {
		for _, p := range systems {
			if err := ctx.Err(); err != nil {
				return err
			}
			if waited := settle(ctx, systems, 30*time.Second); waited > time.Second {
				r.log.Info("waited for the servers to go idle", "before", p.name, "rate", rate, "waited", waited.Round(100*time.Millisecond))
			}
			attack(clients[p.name], p.target, bodies, min(rate, 500), r.plan.Warmup.Std())
			run := attack(clients[p.name], p.target, bodies, rate, r.plan.RateDuration.Std())
			run.System = p.name
			run.PeakRSS = p.peakRSS()
			r.res.Webhook.Runs = append(r.res.Webhook.Runs, run)
			r.log.Info("attack", "system", p.name, "rate", rate, "achieved", fmt.Sprintf("%.0f", run.Achieved),
				"p50", run.P50, "p99", run.P99, "p99.9", run.P999, "max", run.Max, "errors", run.Errors)
		}
		return nil
	}
	for _, rate := range r.plan.Rates {
		if err := atRate(rate, systems...); err != nil {
			return err
		}
	}
	// Then the ladder goes on, doubling, while the floor still holds the
	// last rate: a fixed ladder that every system holds says nothing of
	// the ceilings, and "stagegate holds ≥ 60% of the floor's" needs the
	// floor's (WebhookResult.ceiling).
	if n := len(r.plan.Rates); n > 0 {
		for rate := 2 * r.plan.Rates[n-1]; rate <= maxLadderRate; rate *= 2 {
			if !r.res.Webhook.heldAt(sysFloor, rate/2) {
				break
			}
			if err := atRate(rate, systems...); err != nil {
				return err
			}
		}
	}
	// A doubling ladder knows each ceiling only to a factor of two, so a
	// ratio of ceilings would be 50% or 100%. Halve each system's gap
	// between its ceiling and its first failure a few times, the systems
	// in turn at each halving so that they still run side by side.
	for range ladderHalvings {
		for _, p := range systems {
			if rate := r.res.Webhook.between(p.name); rate > 0 {
				if err := atRate(rate, p); err != nil {
					return err
				}
			}
		}
	}
	r.res.Webhook.ServePeakRSS = sg.peakRSS()
	r.res.Webhook.ServePeakAnon = stopAnon()
	r.res.Webhook.ServeRSS = rss(sg.pid())
	if op != nil {
		r.res.Webhook.OPAPeakRSS = op.peakRSS()
	}
	r.res.Webhook.FloorPeakRSS = fl.peakRSS()
	var errs []error
	for _, p := range systems {
		if p.exited() {
			errs = append(errs, fmt.Errorf("bench: %s exited during the run; see logs/%s.log", p.name, p.name))
		}
	}
	return errors.Join(errs...)
}
