package main

import (
	"fmt"
	"strings"
	"time"
)

// renderReport is REPORT.md; it is also what the run prints.
func renderReport(res *Results, plots []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# stagegate bench (%s mode)\n\n", res.Plan.Mode)
	p("Run %s, took %s. %s, %d CPUs, %s/%s. Load generator, servers and benchmarks share the machine.\n\n",
		res.Started.Format(time.RFC3339), res.Finished.Sub(res.Started).Round(time.Second), res.GoVersion, res.CPUs, res.GOOS, res.GOARCH)

	p("## Targets\n\nReported, never asserted.\n\n| target | goal | measured | met |\n| --- | --- | --- | --- |\n")
	for _, t := range res.Targets {
		met := "not measured"
		if t.Met != nil {
			met = map[bool]string{true: "met", false: "**not met**"}[*t.Met]
		} else if t.Value != "not measured" {
			met = "n/a (" + t.Note + ")"
		}
		value := t.Value
		if t.Note != "" && t.Met != nil {
			value += " — " + t.Note
		}
		p("| %s | %s | %s | %s |\n", t.Name, t.Goal, value, met)
	}

	if len(res.Decision) > 0 {
		p("\n## 1. In-process decision\n\nLedger of %d entries, stage %q, testing.B with allocation counts.\n\n", res.Decision[0].Entries, benchStage)
		p("| benchmark | ns/op | allocs/op | B/op |\n| --- | ---: | ---: | ---: |\n")
		for _, d := range res.Decision {
			p("| %s | %.0f | %d | %d |\n", d.Name, d.NsPerOp, d.AllocsPerOp, d.BytesPerOp)
		}
	}

	w := res.Webhook
	if len(w.Runs) > 0 {
		p("\n## 2–4. Webhook over HTTPS: stagegate, OPA baseline, floor\n\n")
		p("Ledger (and OPA data) of %d digests; Pod and Deployment AdmissionReview bodies (%d and %d bytes) in turn; "+
			"TLS 1.3, keep-alive HTTP/1.1, vegeta constant rate, %s per rate after a %s warm-up. Latencies in ms.\n\n",
			w.Entries, w.BodyBytes["pod"], w.BodyBytes["deployment"], res.Plan.RateDuration.Std(), res.Plan.Warmup.Std())
		p("| system | offered rps | achieved rps | requests | errors | p50 | p90 | p99 | p99.9 | max | peak RSS | load avg |\n")
		p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, r := range w.Runs {
			p("| %s | %d | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %s | %.1f |\n",
				r.System, r.Rate, r.Achieved, r.Requests, r.Errors, r.P50, r.P90, r.P99, r.P999, r.Max, fmtMB(r.PeakRSS), r.LoadAvg1)
		}
		p("\n| offered rps | stagegate p99 / floor p99 | stagegate p99 / OPA p99 |\n| ---: | ---: | ---: |\n")
		for _, rate := range w.rates() {
			sg, ok := w.run(sysStagegate, rate)
			if !ok {
				continue
			}
			p("| %d | %s | %s |\n", rate, ratio(sg, w, sysFloor, rate), ratio(sg, w, sysOPA, rate))
		}
		p("\nCeilings, the highest rate held below the first rate failed (no errors, ≥ 95%% of the rate achieved, p99 < %d ms; "+
			"past the plan's rates the ladder doubles while the floor holds, then halves each system's gap to its first failure %d times):",
			holdLimitMs, ladderHalvings)
		for _, s := range w.systems() {
			switch m, found := w.ceiling(s); {
			case m == 0:
				p(" %s none of the rates;", s)
			case !found:
				p(" %s held every rate, up to %d rps;", s, m)
			default:
				p(" %s %d rps;", s, m)
			}
		}
		p("\n\nPeak RSS (VmHWM): stagegate serve %s (%s once ready; %s anonymous at most, %s resident after the attacks), OPA %s, floor %s.\n",
			fmtMB(w.ServePeakRSS), fmtMB(w.ServeReadyRSS), fmtMB(w.ServePeakAnon), fmtMB(w.ServeRSS), fmtMB(w.OPAPeakRSS), fmtMB(w.FloorPeakRSS))
		for _, r := range w.Runs {
			for _, e := range r.ErrorSamples {
				p("\n- error sample, %s at %d rps: `%s`", r.System, r.Rate, strings.ReplaceAll(e, "`", "'"))
			}
		}
		p("\n")
	}

	if pr := res.Promotion; pr.Clients > 0 {
		p("\n## 5. Promotion throughput\n\n%d concurrent clients, %.1f s, distinct digests, real policy, cosign signing, fsynced bbolt commit.\n\n", pr.Clients, pr.Seconds)
		p("| promotions | errors | per second | p50 | p99 | max |\n| ---: | ---: | ---: | ---: | ---: | ---: |\n")
		p("| %d | %d | %.0f | %s | %s | %s |\n", pr.Count, pr.Errors, pr.PerSecond, fmtMs(pr.P50), fmtMs(pr.P99), fmtMs(pr.Max))
		if pr.LastError != "" {
			p("\nLast error: `%s`\n", pr.LastError)
		}
	}

	if len(res.Scale) > 0 {
		p("\n## 6. Ledger scale\n\nLook-up: `Ledger.State` of 4096 random promoted digests in turn, as serve opens the ledger (cache of recently read state records on), and with the cache off (one bbolt read transaction and Get each), each timed after one first read of every digest. That first read is timed on its own: the first-read column is its mean with the cache on, what the first look-ups after a start cost with the file as the OS left it.\n\n")
		p("| entries | file size | look-up ns/op | look-up allocs/op | uncached ns/op | uncached allocs/op | first read ns | `ledger verify` | verify peak RSS |\n")
		p("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, s := range res.Scale {
			p("| %d | %s | %.0f | %d | %.0f | %d | %.0f | %.2f s | %s |\n", s.Entries, fmtMB(s.FileBytes), s.Lookup.NsPerOp, s.Lookup.AllocsPerOp, s.LookupUncached.NsPerOp, s.LookupUncached.AllocsPerOp, s.LookupFirstNs, s.VerifySeconds, fmtMB(s.VerifyPeakRSS))
		}
		if f := res.SignatureFloor; f.NsPerOp > 0 {
			p("\nSignature floor: `signing.Verifier.Verify` of one entry's envelope on all %d cores at once, nothing else, %.1f µs per entry, so %.1f s for 10^6 entries. `ledger verify` checks every entry's attestation this way (issue 2), so this is its floor on this machine.\n", res.CPUs, f.NsPerOp/1e3, res.floorSeconds())
		}
		if w.ServePeakRSS > 0 {
			p("\nPeak RSS of `stagegate serve` with %d entries after the webhook runs: %s.\n", w.Entries, fmtMB(w.ServePeakRSS))
		}
	}

	if c := res.Continuous; c != nil {
		p("\n## 8. Continuous validation\n\n`TestScale` of internal/inventory against envtest's kube-apiserver: %d pods in %d namespaces (created in %.1f s), "+
			"the controller's client limited to serve's rate; a revocation of the digest %d of them run.\n\n", c.Pods, c.Namespaces, c.CreateSeconds, c.RevokedPods)
		p("| follower's first evaluation | leader's full sweep | revocation reported | extra heap |\n| ---: | ---: | ---: | ---: |\n")
		p("| %.2f s | %.2f s | %.2f s | %s |\n", c.EvaluateSeconds, c.SweepSeconds, c.RevocationSeconds, fmtMB(c.ExtraHeapBytes))
	}

	if h := res.HA; h != nil {
		p("\n## 9. High availability: %d replicas beside a single node\n\n", h.Replicas)
		p("Real `serve` processes on loopback, fsync on, fresh ledgers, promotions of images pushed to an in-process registry over HTTPS; "+
			"%d closed-loop clients for %s each, to the single node and round-robin over the replicas (a follower forwards to the leader), in turn, in two rounds of half that.\n\n",
			h.Single.Clients, res.Plan.PromoteDuration.Std())
		p("| system | promotions | errors | per second | p50 | p99 | max |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, row := range []struct {
			name string
			w    SoakWrites
		}{{"single node", h.Single}, {fmt.Sprintf("%d replicas", h.Replicas), h.Cluster}} {
			p("| %s | %d | %d | %.0f | %s | %s | %s |\n", row.name, row.w.OK, row.w.Errors, row.w.PerSecond, fmtMs(row.w.P50), fmtMs(row.w.P99), fmtMs(row.w.Max))
		}
		if len(h.Admission) > 0 {
			p("\nAdmission: the webhook of the single node and of a follower in turn, %d rounds each, at %d rps for %s after a %s warm-up, Pod and Deployment reviews of three images promoted through each. Every round, in order; the target takes each system's median round by p99. Latencies in ms.\n\n",
				haAdmissionRounds, targetRate, res.Plan.RateDuration.Std(), res.Plan.Warmup.Std())
			p("| system | offered rps | achieved rps | requests | errors | p50 | p90 | p99 | p99.9 | max | load avg |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
			for _, a := range h.AdmissionRounds {
				p("| %s | %d | %.0f | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |\n", a.System, a.Rate, a.Achieved, a.Requests, a.Errors, a.P50, a.P90, a.P99, a.P999, a.Max, a.LoadAvg1)
			}
			for _, a := range h.AdmissionRounds {
				for _, e := range a.ErrorSamples {
					p("\n- error sample, %s: `%s`", a.System, strings.ReplaceAll(e, "`", "'"))
				}
			}
		}
		if len(h.Failovers) > 0 {
			p("\nFailover: SIGKILL of the leader, then %d clients promote against the survivors until the first 201 to a request sent after the kill; the killed replica is then restarted on its data directory.\n\n", haFailoverProbes)
			p("| kill | killed | to first acknowledged promotion | failed attempts meanwhile | restarted replica ready after |\n| ---: | --- | ---: | ---: | ---: |\n")
			for i, f := range h.Failovers {
				p("| %d | %s | %.2f s | %d | %.1f s |\n", i+1, f.Killed, f.Seconds, f.Errors, f.RejoinSeconds)
			}
			for _, f := range h.Failovers {
				for _, e := range f.ErrorSamples {
					p("\n- failed attempt, kill of %s: `%s`", f.Killed, strings.ReplaceAll(e, "`", "'"))
				}
			}
			p("\n")
		}
		if c := h.CatchUp; c != nil {
			p("\nEmpty disk: %s stopped (SIGTERM), its data directory deleted, started again: ready after %.2f s, the leader's ledger holding %d entries; %d on the replica once ready.\n",
				c.Node, c.Seconds, c.Entries, c.Rejoined)
		}
		if len(h.Bulk) > 0 {
			p("\nEmpty disk on a bulk-loaded ledger: a fixture ledger of real signed promotions (imported as `ledger import` does) adopted by sg-0 of a fresh cluster of three, the others installing it as a snapshot; then a follower stopped, wiped and timed to ready (joined, snapshot installed, every entry verified). The section's cluster is stopped first.%s\n\n",
				map[bool]string{true: " -quick uses 10^4 entries in place of 10^5; 10^6 only with " + haBulkEnv + "=1.", false: " 10^6 only with " + haBulkEnv + "=1."}[res.Plan.Mode == "quick"])
			p("| entries | cluster formed by adoption | wiped follower | to ready | entries once ready |\n| ---: | ---: | --- | ---: | ---: |\n")
			for _, b := range h.Bulk {
				p("| %d | %.1f s | %s | %.1f s | %d |\n", b.Entries, b.FormedSeconds, b.CatchUp.Node, b.CatchUp.Seconds, b.CatchUp.Rejoined)
			}
		}
		for _, e := range append(h.Single.ErrorSamples, h.Cluster.ErrorSamples...) {
			p("\n- promotion error: `%s`", strings.ReplaceAll(e, "`", "'"))
		}
		for _, n := range h.Notes {
			p("\n- %s", n)
		}
		p("\n")
	}

	if w := res.Web; w != nil {
		p("\n## 10. Web view\n\n`TestWebScale` of internal/web: the board handler over a real ledger of %d repositories × %d stages, "+
			"and the image page of %d signed entries verified by verify.js in headless Chromium (WebCrypto).\n\n", w.Repositories, w.Stages, w.Entries)
		p("| rows rendered | board first render | board median | board p95 | after a promotion | every row anew | State look-ups alone | page | default page (%d rows) | browser verify | Go verifier |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n", w.PageRows)
		p("| %d | %s | %s | %s | %s | %s | %s | %d KB | %s | %s | %s |\n", w.RowsRendered, fmtMs(w.BoardColdMs), fmtMs(w.BoardMs), fmtMs(w.BoardP95Ms), fmtMs(w.BoardChangedMs), fmtMs(w.BoardRedrawMs),
			fmtMs(w.FloorMs), w.BoardBytes>>10, fmtMs(w.BoardPageMs), fmtMs(w.BrowserMs), fmtMs(w.GoMs))
	}

	if len(plots) > 0 {
		p("\n## Plots\n\n")
		for _, f := range plots {
			p("![%s](%s)\n", f, f)
		}
	}
	if len(res.Notes) > 0 {
		p("\n## Notes\n\n")
		for _, n := range res.Notes {
			p("- %s\n", n)
		}
	}
	return b.String()
}

func ratio(sg LoadRun, w WebhookResult, other string, rate int) string {
	o, ok := w.run(other, rate)
	if !ok || o.P99 == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", sg.P99/o.P99)
}
