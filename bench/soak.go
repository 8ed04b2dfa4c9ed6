package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/registry"
)

// The soak's load (issue 6): admission at a constant rate, with promotions
// of new digests and occasional revocations written at the same time, on
// the 10^4-entry fixture.
const (
	soakEntries        = 10_000
	soakAdmissionRate  = 500
	soakPromoteRate    = 20 // promotions per second, over all clients
	soakPromoteClients = 4
	soakRevokeEvery    = 20 // each client revokes every n-th digest it promoted
	soakSampleEvery    = 10 * time.Second
	// soakFlatFactor is the flat-memory rule: the last window's mean RSS
	// may exceed the first window's by at most this factor.
	soakFlatFactor = 1.2
)

// soakImage is one pushed image, promoted once during the soak.
type soakImage struct{ repo, digest string }

// runSoak is `go run ./bench -soak`: stagegate serve on a writable copy of
// the fixture, under admission and promotion load for d, then `ledger
// verify`. It writes out/soak.json, SOAK.md and memory.png, and fails when
// a verdict does.
func runSoak(ctx context.Context, work, out string, d time.Duration, log *slog.Logger) error {
	res := &SoakResult{Started: time.Now().UTC(), Duration: Duration(d), Entries: soakEntries,
		GoVersion: runtime.Version(), CPUs: runtime.NumCPU()}
	logs := filepath.Join(out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	log.Info("soak starting", "duration", d, "out", out, "work", work)
	ws, err := prepareWorkspace(ctx, work, log)
	if err != nil {
		return err
	}
	if _, err := ws.fixture(ctx, soakEntries); err != nil {
		return err
	}
	// Promotions write, so serve gets a copy; the cached fixture stays
	// as it is for the next run.
	dataDir := filepath.Join(ws.dir, "soak")
	if err := os.RemoveAll(dataDir); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := copyFile(filepath.Join(ws.fixtureDir(soakEntries), "ledger.db"), filepath.Join(dataDir, "ledger.db")); err != nil {
		return err
	}

	reg, err := registry.StartEmbedded("127.0.0.1:0", log)
	if err != nil {
		return err
	}
	defer reg.Close()
	nImages := int(math.Ceil(d.Seconds()*soakPromoteRate*1.1)) + 50
	t0 := time.Now()
	images, err := pushImages(ctx, reg.Host, nImages)
	if err != nil {
		return err
	}
	log.Info("pushed images", "count", len(images), "registry", reg.Host, "took", time.Since(t0).Round(time.Millisecond))

	tokens, tokensPath := make([]string, soakPromoteClients), filepath.Join(ws.dir, "soak-tokens.yaml")
	var tf api.TokenFile
	for i := range tokens {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return err
		}
		tokens[i] = hex.EncodeToString(b)
		// One identity per client: the rate limit is per identity.
		tf.Tokens = append(tf.Tokens, api.Token{SHA256: api.HashToken(tokens[i]), Subject: fmt.Sprintf("soak-%d", i), Groups: []string{"pipeline"}})
	}
	if err := writeYAML(tokensPath, tf, 0o600); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cfg, err := ws.config(dataDir, addr, "")
	if err != nil {
		return err
	}
	cfg.TokensFile = tokensPath
	cfg.Registries = append(cfg.Registries, config.Registry{Host: reg.Host, Insecure: true})
	cfgPath := filepath.Join(ws.dir, "soak.yaml")
	if err := writeYAML(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	first := cfg.StageNames()[0]

	tlsCfg, err := clientTLS(filepath.Join(ws.certDir, "ca.crt"))
	if err != nil {
		return err
	}
	sg, err := startProc(ctx, sysStagegate, filepath.Join(logs, "stagegate.log"), ws.bin, "serve", "--config", cfgPath, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer sg.stop()
	base := "https://" + addr
	sg.target, sg.health = base+"/admission/validate/"+benchStage, base+"/readyz"
	if err := sg.waitReady(ctx, tlsCfg, 5*time.Minute); err != nil {
		return err
	}
	bodies, err := reviewBodies(soakEntries)
	if err != nil {
		return err
	}
	for _, b := range bodies {
		if err := checkAnswer(ctx, tlsCfg, sg.target, b); err != nil {
			return err
		}
	}

	// A warm-up at the admission rate first, so that the first window
	// measures serve serving rather than the end of its start-up.
	res.Warmup = Duration(min(10*time.Second, d/6))
	admClient, apiClient := newClient(tlsCfg), newClient(tlsCfg)
	if wu := attack(admClient, sg.target, bodies, soakAdmissionRate, res.Warmup.Std()); wu.Errors > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("warm-up: %d errors of %d requests (not counted)", wu.Errors, wu.Requests))
	}

	// The load.
	res.SampleEvery = Duration(min(soakSampleEvery, max(d/30, time.Second)))
	res.Window = Duration(min(time.Minute, d/4))
	log.Info("load starting", "admission rps", soakAdmissionRate, "promotions/s", soakPromoteRate, "revoke every", soakRevokeEvery)
	lctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	wg.Go(func() { res.Admission = attack(admClient, sg.target, bodies, soakAdmissionRate, d) })
	wg.Go(func() {
		res.Samples = sampleMemory(lctx, apiClient, sg, base+"/metrics", res.SampleEvery.Std(), start, log)
	})
	w := &soakWriter{client: apiClient, base: base, stage: first, images: images}
	wg.Go(func() { w.run(lctx, tokens) })
	wg.Wait()
	elapsed := time.Since(start)
	res.Admission.System = sysStagegate
	res.Promotions = w.promotions.result(len(tokens), elapsed)
	res.Revocations = w.revocations.result(len(tokens), elapsed)
	if w.exhausted.Load() {
		res.Notes = append(res.Notes, fmt.Sprintf("all %d pushed images were promoted before the end", len(images)))
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if sg.exited() {
		res.Notes = append(res.Notes, "serve exited during the soak; see logs/stagegate.log")
	}
	res.Samples = append(res.Samples, sample(apiClient, sg, base+"/metrics", start, log))
	res.ExpectedSize = uint64(soakEntries + res.Promotions.OK + res.Revocations.OK)
	if res.LedgerSize, err = treeSize(ctx, apiClient, base, tokens[0]); err != nil {
		res.Notes = append(res.Notes, err.Error())
	}
	res.PeakRSS = sg.stop()
	res.LoadAvg1 = loadAvg()

	// serve is stopped: verify the soaked ledger as an auditor would.
	cmd := exec.CommandContext(ctx, ws.bin, "ledger", "verify", "--config", cfgPath)
	var vout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &vout, &vout
	t0 = time.Now()
	err = cmd.Run()
	res.VerifySecs, res.VerifyOK = time.Since(t0).Seconds(), err == nil
	res.VerifyOutput = strings.TrimSpace(vout.String())

	res.summarise()
	res.Finished = time.Now().UTC()
	return res.write(out, log)
}

// soakWriter is the promotion clients.
type soakWriter struct {
	client      *http.Client
	base, stage string
	images      []soakImage
	next        atomic.Int64
	exhausted   atomic.Bool

	promotions, revocations latencies
}

// run paces each client at its share of soakPromoteRate until ctx ends.
// A client that falls behind skips ticks rather than bursting, so the
// rate stays steady.
func (w *soakWriter) run(ctx context.Context, tokens []string) {
	every := time.Duration(float64(time.Second) * float64(len(tokens)) / soakPromoteRate)
	var wg sync.WaitGroup
	for _, tok := range tokens {
		wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for n := 1; ; n++ {
				i := int(w.next.Add(1)) - 1
				if i >= len(w.images) {
					w.exhausted.Store(true)
					return
				}
				img := w.images[i]
				d, err := post(ctx, w.client, w.base+"/v1/promotions", tok, map[string]any{
					"image": img.repo + "@" + img.digest, "stage": w.stage, "reason": "soak promotion"})
				if ctx.Err() != nil {
					return // cut off by the end of the soak, not an error
				}
				w.promotions.add(d, err)
				if err == nil && n%soakRevokeEvery == 0 {
					d, err := post(ctx, w.client, w.base+"/v1/revocations", tok, map[string]any{
						"digest": img.digest, "repository": img.repo, "stage": w.stage, "reason": "soak revocation"})
					if ctx.Err() != nil {
						return
					}
					w.revocations.add(d, err)
				}
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
			}
		})
	}
	wg.Wait()
}

// post sends one write and wants 201 Created.
func post(ctx context.Context, c *http.Client, url, token string, body any) (time.Duration, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	t0 := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return time.Since(t0), err
	}
	raw, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	d := time.Since(t0)
	if err != nil {
		return d, err
	}
	if resp.StatusCode != http.StatusCreated {
		return d, fmt.Errorf("HTTP %d: %.200s", resp.StatusCode, raw)
	}
	return d, nil
}

// latencies gathers one kind of write.
type latencies struct {
	mu      sync.Mutex
	ok      []time.Duration
	errs    int
	samples []string
}

func (l *latencies) add(d time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.errs++
		if msg := err.Error(); len(l.samples) < 5 && !slices.Contains(l.samples, msg) {
			l.samples = append(l.samples, msg)
		}
		return
	}
	l.ok = append(l.ok, d)
}

func (l *latencies) result(clients int, elapsed time.Duration) SoakWrites {
	l.mu.Lock()
	defer l.mu.Unlock()
	lat := slices.Sorted(slices.Values(l.ok))
	w := SoakWrites{Clients: clients, OK: len(lat), Errors: l.errs, ErrorSamples: l.samples,
		PerSecond: float64(len(lat)) / elapsed.Seconds()}
	if len(lat) > 0 {
		w.P50 = ms(lat[len(lat)/2])
		w.P99 = ms(lat[min(len(lat)*99/100, len(lat)-1)])
		w.Max = ms(lat[len(lat)-1])
	}
	return w
}

// pushImages pushes n small random images, each its own digest, spread
// over a few repositories of the registry at host.
func pushImages(ctx context.Context, host string, n int) ([]soakImage, error) {
	out := make([]soakImage, n)
	var next atomic.Int64
	errs := make([]error, 8)
	var wg sync.WaitGroup
	for wk := range errs {
		wg.Go(func() {
			for i := int(next.Add(1)) - 1; i < n && ctx.Err() == nil; i = int(next.Add(1)) - 1 {
				repo := fmt.Sprintf("%s/soak/app-%02d", host, i%20)
				img, err := random.Image(256, 1)
				if err == nil {
					var ref name.Tag
					if ref, err = name.NewTag(fmt.Sprintf("%s:img-%d", repo, i), name.Insecure); err == nil {
						err = remote.Write(ref, img, remote.WithContext(ctx))
					}
				}
				if err != nil {
					errs[wk] = fmt.Errorf("bench: push soak image %d: %w", i, err)
					return
				}
				dg, err := img.Digest()
				if err != nil {
					errs[wk] = err
					return
				}
				out[i] = soakImage{repo: repo, digest: dg.String()}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, ctx.Err()
}

// sampleMemory samples serve's memory every interval until ctx ends.
func sampleMemory(ctx context.Context, c *http.Client, p *proc, metricsURL string, every time.Duration, start time.Time, log *slog.Logger) []MemSample {
	out := []MemSample{sample(c, p, metricsURL, start, log)}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
			s := sample(c, p, metricsURL, start, log)
			out = append(out, s)
			log.Info("soak", "t", time.Duration(s.Seconds*float64(time.Second)).Round(time.Second),
				"rss MB", s.RSS>>20, "anon MB", s.RSSAnon>>20, "heap inuse MB", s.HeapInuse>>20, "gc goal MB", s.HeapGoal>>20)
		}
	}
}

func sample(c *http.Client, p *proc, metricsURL string, start time.Time, log *slog.Logger) MemSample {
	s := MemSample{Seconds: time.Since(start).Seconds()}
	s.RSS, s.RSSAnon, s.RSSFile = procRSS(p.pid())
	var err error
	if s.HeapInuse, s.HeapGoal, err = heapFigures(c, metricsURL); err != nil {
		log.Warn("scrape failed", "err", err)
	}
	return s
}

// procRSS is the current resident set of process pid (VmRSS) and its
// anonymous and file-backed parts, in bytes.
func procRSS(pid int) (rss, anon, file int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = kb * 1024
		case "RssAnon":
			anon = kb * 1024
		case "RssFile":
			file = kb * 1024
		}
	}
	return rss, anon, file
}

// heapFigures scrapes go_memstats_heap_inuse_bytes and
// go_memstats_next_gc_bytes from serve's /metrics.
func heapFigures(c *http.Client, url string) (inuse, goal int64, err error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("bench: %s: HTTP %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: %s: %w", url, err)
	}
	gauge := func(name string) (int64, error) {
		mf, ok := mfs[name]
		if !ok || len(mf.GetMetric()) == 0 {
			return 0, fmt.Errorf("bench: %s has no %s", url, name)
		}
		return int64(mf.GetMetric()[0].GetGauge().GetValue()), nil
	}
	if inuse, err = gauge("go_memstats_heap_inuse_bytes"); err != nil {
		return 0, 0, err
	}
	goal, err = gauge("go_memstats_next_gc_bytes")
	return inuse, goal, err
}

// treeSize reads the size from serve's latest checkpoint: a signed note
// whose second line is the tree size.
func treeSize(ctx context.Context, c *http.Client, base, token string) (uint64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/ledger/checkpoint", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: checkpoint: %w", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	lines := strings.Split(string(raw), "\n")
	if resp.StatusCode != http.StatusOK || len(lines) < 2 {
		return 0, fmt.Errorf("bench: checkpoint: HTTP %d: %.200s", resp.StatusCode, raw)
	}
	n, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bench: checkpoint size %q: %w", lines[1], err)
	}
	return n, nil
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return fmt.Errorf("bench: copy %s: %w", from, err)
	}
	if err := dst.Close(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
