package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// The memory scenario's ledger: every entry as large as the API lets a
// caller make it (a reason at promotion's 1 KiB cap and evidence at its
// 16 KiB cap), all in one
// repository, so that one image's history is the whole ledger. That is
// what an attacker holding a pipeline token writes to make a read answer
// large; one unpaginated history once took 242 MB and 1.44 GB RSS.
const (
	memoryRepo      = "registry.example.com/bench/hostile"
	memoryReasonLen = 1024
	// memoryEvidenceLen keeps {"doc":"…"} just under the 16 KiB cap.
	memoryEvidenceLen = 16<<10 - 16
	memoryClients     = 8
	memoryGoal        = 512 << 20 // the deploy/ memory limit
	// memoryFixtureVersion changes whenever memoryEntry does, so that a
	// cached fixture of other entries is not measured.
	memoryFixtureVersion = "v2"
)

// MemoryResult is the memory scenario: serve's RSS while clients page
// through the largest answers it can give.
type MemoryResult struct {
	Entries   int   `json:"entries"`
	FileBytes int64 `json:"fileBytes"`
	Clients   int   `json:"clients"`
	// IdleRSS is serve's peak RSS once ready, before any read: the
	// baseline the loaded figure is set beside. Both count the ledger's
	// memory-mapped pages that were read, which the kernel reclaims under
	// a cgroup limit; PeakAnon (sampled RssAnon) is what it cannot.
	IdleRSS  int64   `json:"idleRSSBytes"`
	PeakRSS  int64   `json:"peakRSSBytes"`
	IdleAnon int64   `json:"idleAnonBytes"`
	PeakAnon int64   `json:"peakAnonBytes"`
	Requests int     `json:"requests"`
	Errors   int     `json:"errors"`
	Seconds  float64 `json:"seconds"`
	// MaxResponse is the largest body served, in bytes.
	MaxResponse int64 `json:"maxResponseBytes"`
}

func memoryEntry(s promotion.Signer, policyDigest string, i int, base time.Time) (*ledger.Entry, error) {
	reason := fmt.Sprintf("%06d ", i) + strings.Repeat("x", memoryReasonLen-7)
	return promotion.PromotionEntry(s, uint64(i), promotion.Promoted{
		Image: registry.Resolved{Repository: memoryRepo, Digest: digestOf(i)}, Stage: benchStage, Reason: reason,
		Evidence:  map[string]any{"doc": strings.Repeat("e", memoryEvidenceLen)},
		Requester: policy.Identity{Subject: "ci-pipeline", Groups: []string{"pipeline", "release"}},
		Time:      base.Add(time.Duration(i) * time.Millisecond), PolicyDigest: policyDigest,
	})
}

// memory starts serve on the hostile fixture and has memoryClients
// clients page through /v1/ledger/entries and the repository's history
// (1000 entries a page, the most the API allows) for the plan's rate
// duration, then reports serve's peak RSS beside its idle RSS.
func (r *Runner) memory(ctx context.Context) error {
	n := r.plan.MemoryEntries
	dir := filepath.Join(r.ws.dir, fmt.Sprintf("hostile-%s-%d", memoryFixtureVersion, n))
	if !exists(filepath.Join(dir, "ledger.db")) {
		tmp := dir + ".tmp"
		if err := os.RemoveAll(tmp); err != nil {
			return err
		}
		if err := os.MkdirAll(tmp, 0o700); err != nil {
			return err
		}
		if err := r.ws.buildLedgerWith(ctx, tmp, n, memoryEntry); err != nil {
			return err
		}
		if err := os.Rename(tmp, dir); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	fi, err := os.Stat(filepath.Join(dir, "ledger.db"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	cfg, err := r.ws.config(dir, addr, "")
	if err != nil {
		return err
	}
	// A token of its own: the bench's tokens file keeps none.
	cfg.TokensFile = filepath.Join(dir, "reader-tokens.yaml")
	token, err := app.WriteTokenFile(cfg.TokensFile, "", "reader", []string{"readers"})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	cfgPath := filepath.Join(r.ws.dir, fmt.Sprintf("memory-%d.yaml", n))
	if err := writeYAML(cfgPath, cfg, 0o600); err != nil {
		return err
	}
	logs := filepath.Join(r.out, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return err
	}
	sg, err := startProc(ctx, "memory", filepath.Join(logs, "memory.log"), r.ws.bin, "serve", "--config", cfgPath, "--log-level", "warn")
	if err != nil {
		return err
	}
	defer sg.stop()
	sg.health = "https://" + addr + "/readyz"
	tlsCfg, err := clientTLS(filepath.Join(r.ws.certDir, "ca.crt"))
	if err != nil {
		return err
	}
	if err := sg.waitReady(ctx, tlsCfg, 5*time.Minute); err != nil {
		return err
	}
	res := MemoryResult{Entries: n, FileBytes: fi.Size(), Clients: memoryClients, IdleRSS: sg.peakRSS(), IdleAnon: rssAnon(sg.pid())}
	stopSampling := sampleAnon(sg.pid(), res.IdleAnon)

	base := "https://" + addr
	paths := []string{"/v1/ledger/entries", "/v1/images/" + memoryRepo}
	d := r.plan.RateDuration.Std()
	var mu sync.Mutex
	t0 := time.Now()
	var wg sync.WaitGroup
	for c := range memoryClients {
		wg.Go(func() {
			client := newClient(tlsCfg)
			defer client.CloseIdleConnections()
			path := paths[c%len(paths)]
			for start := uint64(0); time.Since(t0) < d && ctx.Err() == nil; {
				size, next, err := readPage(ctx, client, base+path, token, start)
				mu.Lock()
				res.Requests++
				res.MaxResponse = max(res.MaxResponse, size)
				if err != nil {
					res.Errors++
				}
				mu.Unlock()
				if err != nil || next == nil {
					start = 0
					continue
				}
				start = *next
			}
		})
	}
	wg.Wait()
	res.Seconds = time.Since(t0).Seconds()
	res.PeakRSS = sg.peakRSS()
	res.PeakAnon = stopSampling()
	r.res.Memory = res
	r.log.Info("memory", "entries", n, "requests", res.Requests, "errors", res.Errors, "max response MB", res.MaxResponse>>20,
		"idle RSS MB", res.IdleRSS>>20, "peak RSS MB", res.PeakRSS>>20, "peak anon MB", res.PeakAnon>>20)
	if sg.exited() {
		return fmt.Errorf("bench: serve exited during the memory scenario; see logs/memory.log")
	}
	return nil
}

// readPage reads one page, keeping only its size and where the next one
// starts: the client must not be what holds the memory.
func readPage(ctx context.Context, c *http.Client, target, token string, start uint64) (int64, *uint64, error) {
	u := target + "?" + url.Values{"start": {fmt.Sprint(start)}, "limit": {"1000"}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var page struct {
		Next *uint64 `json:"next"`
	}
	cr := &countingReader{r: resp.Body}
	err = json.NewDecoder(cr).Decode(&page)
	_, _ = io.Copy(io.Discard, cr)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("bench: %s: %s", u, resp.Status)
	}
	return cr.n, page.Next, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// rssAnon is the anonymous part of process pid's resident set (RssAnon in
// /proc/<pid>/status), in bytes, or 0 when it cannot be read.
// sampleAnon samples pid's RssAnon every 20 ms from now until the
// returned stop is called, which returns the peak seen (at least from).
// VmHWM cannot say this: it counts every page of the ledger's mapping
// ever touched, clean file pages that a cgroup limit reclaims.
func sampleAnon(pid int, from int64) (stop func() int64) {
	done := make(chan struct{})
	sampled := make(chan int64, 1)
	go func() {
		peak := from
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				sampled <- peak
				return
			case <-t.C:
				peak = max(peak, rssAnon(pid))
			}
		}
	}()
	return sync.OnceValue(func() int64 { close(done); return <-sampled })
}

func rssAnon(pid int) int64 { return statusKB(pid, "RssAnon:") }

// rss is pid's resident set now (VmRSS), in bytes.
func rss(pid int) int64 { return statusKB(pid, "VmRSS:") }

// statusKB reads one "kB" field of /proc/<pid>/status, in bytes (0 when
// the process is gone).
func statusKB(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return kb << 10
			}
		}
	}
	return 0
}
