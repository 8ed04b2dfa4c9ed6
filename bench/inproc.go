package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/ledger"
)

// benchmark runs fn under testing.B with allocation reporting (the
// equivalent of -benchmem) for about d.
func benchmark(d time.Duration, fn func(b *testing.B)) testing.BenchmarkResult {
	testing.Init()
	_ = flag.Set("test.benchtime", d.String())
	return testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		fn(b)
	})
}

func benchRow(name string, entries int, r testing.BenchmarkResult) BenchRow {
	return BenchRow{Name: name, Entries: entries, N: r.N, NsPerOp: float64(r.T.Nanoseconds()) / float64(max(r.N, 1)),
		AllocsPerOp: r.AllocsPerOp(), BytesPerOp: r.AllocedBytesPerOp()}
}

// decision is scenario 1: the in-process admission decision on the
// webhook-sized ledger, with and without the HTTP handler's JSON work.
func (r *Runner) decision(ctx context.Context) error {
	n := r.plan.WebhookLedger
	cfg, err := r.ws.config(r.ws.fixtureDir(n), "127.0.0.1:0", "")
	if err != nil {
		return err
	}
	// The webhook's reviewer, as serve builds it, over the fixture opened
	// read-only.
	a, err := app.Build(ctx, cfg, app.WithReadOnly())
	if err != nil {
		return err
	}
	defer a.Close()
	rev := a.Reviewer
	handler := admission.NewHandler(rev)
	bodies, err := reviewBodies(n)
	if err != nil {
		return err
	}
	path := "/admission/validate/" + benchStage
	for _, b := range bodies {
		var ar admissionv1.AdmissionReview
		if err := json.Unmarshal(b.JSON, &ar); err != nil {
			return fmt.Errorf("bench: %s body: %w", b.Name, err)
		}
		req := ar.Request
		// A benchmark of a denial would measure the wrong path.
		if resp := rev.Review(ctx, benchStage, req); !resp.Allowed {
			return fmt.Errorf("bench: %s is not allowed on the fixture: %v", b.Name, resp.Result)
		}
		// A CPU profile of the review, for `go tool pprof -top` when a
		// target is missed.
		prof, err := os.Create(filepath.Join(r.out, "decision-"+b.Name+".cpu.pprof"))
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			prof.Close()
			return err
		}
		res := benchmark(r.plan.BenchTime.Std(), func(tb *testing.B) {
			for tb.Loop() {
				if resp := rev.Review(ctx, benchStage, req); !resp.Allowed {
					tb.Fatal("denied")
				}
			}
		})
		pprof.StopCPUProfile()
		prof.Close()
		r.res.Decision = append(r.res.Decision, benchRow("Reviewer.Review/"+b.Name, n, res))
		res = benchmark(r.plan.BenchTime.Std(), func(tb *testing.B) {
			w := httptest.NewRecorder()
			for tb.Loop() {
				hr := httptest.NewRequestWithContext(ctx, http.MethodPost, path, bytes.NewReader(b.JSON))
				hr.Header.Set("Content-Type", "application/json")
				w.Body.Reset()
				handler.ServeHTTP(w, hr)
				if !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) {
					tb.Fatalf("denied: %s", w.Body.Bytes())
				}
			}
		})
		r.res.Decision = append(r.res.Decision, benchRow("handler (decode+review+encode)/"+b.Name, n, res))
		r.log.Info("decision", "body", b.Name, "bytes", len(b.JSON), "review ns/op", r.res.Decision[len(r.res.Decision)-2].NsPerOp)
	}
	return nil
}

// lookUp is the look-up the scale scenario times: the digest must be
// active in the bench stage, or the fixture is not what the figure claims.
func lookUp(l *ledger.Ledger, digest string) error {
	st, ok, err := l.State(digest, benchStage)
	if err != nil || !ok || !st.Active() {
		return fmt.Errorf("bench: state of %s: %v %v %v", digest, st, ok, err)
	}
	return nil
}

// readEach looks up every digest once and returns the mean time of a look-up
// in nanoseconds.
func readEach(l *ledger.Ledger, digests []string) (float64, error) {
	t0 := time.Now()
	for _, d := range digests {
		if err := lookUp(l, d); err != nil {
			return 0, err
		}
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(len(digests)), nil
}

// signatureFloor measures what `ledger verify` cannot go below: one
// fixture entry's envelope checked by signing.Verifier on every core at
// once, as verify's workers do, and nothing else (no bbolt, no tree, no
// index). Its ns/op times the entry count is the verify time of a ledger
// whose every other cost were zero.
func (r *Runner) signatureFloor(dataDir string) (BenchRow, error) {
	cfg, err := r.ws.config(dataDir, "127.0.0.1:0", "")
	if err != nil {
		return BenchRow{}, err
	}
	// Entry 0 of the fixture, as fixtureEntry signed it.
	a, err := app.Build(context.Background(), cfg, app.WithReadOnly())
	if err != nil {
		return BenchRow{}, err
	}
	defer a.Close()
	entries, err := a.Ledger.Entries(0, 1)
	if err != nil || len(entries) != 1 {
		return BenchRow{}, fmt.Errorf("bench: entry 0 of %s: %d entries, %v", dataDir, len(entries), err)
	}
	e, keys := entries[0], a.Keys
	res := benchmark(r.plan.BenchTime.Std(), func(b *testing.B) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := keys.Verifier.Verify(e.Envelope); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	return benchRow("signing.Verifier.Verify on all cores", 0, res), nil
}

// scale is scenario 6: look-up latency, file size and `ledger verify` time
// per ledger size.
func (r *Runner) scale(ctx context.Context) error {
	if len(r.plan.ScaleSizes) > 0 {
		floor, err := r.signatureFloor(r.ws.fixtureDir(r.plan.ScaleSizes[0]))
		if err != nil {
			return err
		}
		r.res.SignatureFloor = floor
	}
	for _, n := range r.plan.ScaleSizes {
		if err := ctx.Err(); err != nil {
			return err
		}
		row := ScaleRow{Entries: n}
		dir := r.ws.fixtureDir(n)
		dbPath := filepath.Join(dir, "ledger.db")
		fi, err := os.Stat(dbPath)
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		row.FileBytes = fi.Size()

		// Random present digests: the state bucket is read at random, as
		// admission reads it, not in insertion order. 4096 of them stand for
		// the images a large cluster runs; admission asks about those again
		// and again, whatever the ledger's size.
		rnd := rand.New(rand.NewPCG(uint64(n), 1))
		digests := make([]string, 4096)
		for i := range digests {
			digests[i] = digestOf(rnd.IntN(n))
		}
		// Twice: as serve opens the ledger (State's cache of recently read
		// records on, what admission meets), and with the cache off, so the
		// report also shows what a bbolt read of a cold digest costs.
		//
		// Each pass starts with one read of every digest, timed on its own:
		// that is the first look-up after a start, from whatever of the file
		// the OS still caches. Without it the timed loop measured that
		// instead whenever it ran fewer iterations than there are digests
		// (a 10^6 file the kernel had evicted: 1.3 ms a read, so testing.B
		// stopped after a few hundred and the cache never got a hit).
		for _, cached := range []bool{true, false} {
			opts := []ledger.Option{ledger.WithReadOnly()}
			if !cached {
				opts = append(opts, ledger.WithStateCache(0))
			}
			l, err := ledger.Open(dbPath, opts...)
			if err != nil {
				return err
			}
			first, err := readEach(l, digests)
			if err != nil {
				l.Close()
				return err
			}
			res := benchmark(r.plan.BenchTime.Std(), func(b *testing.B) {
				i := 0
				for b.Loop() {
					if err := lookUp(l, digests[i%len(digests)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			l.Close()
			if cached {
				row.LookupFirstNs = first
				row.Lookup = benchRow("Ledger.State", n, res)
			} else {
				row.LookupUncached = benchRow("Ledger.State uncached", n, res)
			}
		}

		cfgPath := filepath.Join(r.ws.dir, fmt.Sprintf("verify-%d.yaml", n))
		if _, err := r.ws.config(dir, "127.0.0.1:0", cfgPath); err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, r.ws.bin, "ledger", "verify", "--config", cfgPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("bench: ledger verify of %d entries: %w", n, err)
		}
		// The child's rusage maxrss starts at the parent's (Linux keeps it
		// across fork), so poll the child's own high-water mark instead.
		stop := make(chan struct{})
		hwm := make(chan int64, 1)
		go func() {
			var peak int64
			t := time.NewTicker(50 * time.Millisecond)
			defer t.Stop()
			for {
				if v := peakRSS(cmd.Process.Pid); v > peak {
					peak = v
				}
				select {
				case <-stop:
					hwm <- peak
					return
				case <-t.C:
				}
			}
		}()
		err = cmd.Wait()
		close(stop)
		row.VerifyPeakRSS = <-hwm
		row.VerifySeconds = time.Since(t0).Seconds()
		if err != nil {
			return fmt.Errorf("bench: ledger verify of %d entries: %w\n%s", n, err, out.Bytes())
		}
		row.VerifyOutput = string(bytes.TrimSpace(out.Bytes()))
		r.res.Scale = append(r.res.Scale, row)
		r.log.Info("scale", "entries", n, "lookup ns/op", row.Lookup.NsPerOp, "uncached ns/op", row.LookupUncached.NsPerOp, "verify s", row.VerifySeconds, "file MB", row.FileBytes>>20)
	}
	return nil
}
