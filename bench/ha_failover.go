package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// failover SIGKILLs the leader, times the first promotion acknowledged
// after it by clients retrying against the survivors, then restarts the
// killed replica and waits until it is ready again.
func (r *Runner) failover(ctx context.Context, w *soakWriter, nodes []*haNode, token, logs string, k int) (FailoverRun, error) {
	leader, err := haLeader(ctx, w.client, nodes, token)
	if err != nil {
		return FailoverRun{}, err
	}
	// The cluster writes before the kill, so what follows is the failover.
	img, ok := w.take()
	if !ok {
		return FailoverRun{}, errors.New("bench: no images left for the failover")
	}
	if _, err := w.promote(ctx, nodes[(leader+1)%len(nodes)].base, token, img); err != nil {
		return FailoverRun{}, fmt.Errorf("bench: promotion before the kill: %w", err)
	}
	var survivors []string
	for i, n := range nodes {
		if i != leader {
			survivors = append(survivors, n.base)
		}
	}
	fo := FailoverRun{Killed: nodes[leader].id}
	var (
		mu    sync.Mutex
		first time.Time
		errs  latencies
	)
	fctx, cancel := context.WithTimeout(ctx, haFailoverBound)
	defer cancel()
	killed := time.Now()
	nodes[leader].p.p.Kill()
	var wg sync.WaitGroup
	for c := range haFailoverProbes {
		wg.Go(func() {
			for fctx.Err() == nil {
				img, ok := w.take()
				if !ok {
					return
				}
				_, err := w.promote(fctx, survivors[c%len(survivors)], token, img)
				if err == nil {
					mu.Lock()
					if first.IsZero() {
						first = time.Now()
					}
					mu.Unlock()
					cancel()
					return
				}
				if fctx.Err() != nil {
					return
				}
				errs.add(0, err)
				// A failed attempt often fails at once (no leader yet):
				// pause rather than spin on the cores the cluster needs.
				select {
				case <-fctx.Done():
				case <-time.After(20 * time.Millisecond):
				}
			}
		})
	}
	wg.Wait()
	fo.Errors, fo.ErrorSamples = errs.errs, errs.samples
	if first.IsZero() {
		return fo, fmt.Errorf("bench: no promotion acknowledged within %s of killing %s", haFailoverBound, fo.Killed)
	}
	fo.Seconds = first.Sub(killed).Seconds()

	// Back to three for the next kill: the same data directory, as a pod
	// restarted on its volume.
	n := nodes[leader]
	n.p.logf.Close()
	n.log = fmt.Sprintf("ha-%s-restart-%d.log", n.id, k+1)
	t0 := time.Now()
	if n.p, err = startProc(ctx, "stagegate-"+n.id, filepath.Join(logs, n.log), r.ws.bin, "serve", "--config", n.cfgPath, "--log-level", "warn"); err != nil {
		return fo, err
	}
	n.p.health = n.base + "/readyz"
	if err := n.p.waitReady(ctx, w.client.Transport.(*http.Transport).TLSClientConfig, 2*time.Minute); err != nil {
		return fo, err
	}
	fo.RejoinSeconds = time.Since(t0).Seconds()
	return fo, nil
}

// haLeader asks the members for the leader, until one is named.
func haLeader(ctx context.Context, c *http.Client, nodes []*haNode, token string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, haFailoverBound)
	defer cancel()
	for {
		for _, n := range nodes {
			if i, ok := askLeader(ctx, c, n.base, token, nodes); ok {
				return i, nil
			}
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("bench: no leader named: %w", ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func askLeader(ctx context.Context, c *http.Client, base, token string, nodes []*haNode) (int, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster", nil)
	if err != nil {
		return 0, false
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct {
			ID   string `json:"id"`
			Role string `json:"role"`
		} `json:"members"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return 0, false
	}
	for _, m := range st.Members {
		if m.Role != "leader" {
			continue
		}
		for i, n := range nodes {
			if n.id == m.ID {
				return i, true
			}
		}
	}
	return 0, false
}

// CatchUpRun is an empty replica's rejoin.
type CatchUpRun struct {
	Node string `json:"node"`
	// Entries is the leader's ledger size before the wipe; Rejoined the
	// replica's own once it reports ready.
	Entries  uint64  `json:"entries"`
	Rejoined uint64  `json:"rejoinedEntries"`
	Seconds  float64 `json:"seconds"`
}

// emptyDisk stops a follower (SIGTERM), deletes its data directory (ledger
// and Raft state), starts it again, and times it until it is ready:
// joined, caught up through a snapshot and verified.
// ready bounds the wait.
func (r *Runner) emptyDisk(ctx context.Context, w *soakWriter, nodes []*haNode, token, logs string, ready time.Duration) (CatchUpRun, error) {
	leader, err := haLeader(ctx, w.client, nodes, token)
	if err != nil {
		return CatchUpRun{}, err
	}
	n := nodes[(leader+1)%len(nodes)]
	cu := CatchUpRun{Node: n.id}
	if cu.Entries, err = treeSize(ctx, w.client, nodes[leader].base, token); err != nil {
		return cu, err
	}
	n.p.stop()
	if err := os.RemoveAll(n.dataDir); err != nil {
		return cu, fmt.Errorf("bench: %w", err)
	}
	if err := os.MkdirAll(n.dataDir, 0o700); err != nil {
		return cu, fmt.Errorf("bench: %w", err)
	}
	n.log = strings.TrimSuffix(n.log, ".log") + "-empty-disk.log"
	t0 := time.Now()
	if n.p, err = startProc(ctx, "stagegate-"+n.id, filepath.Join(logs, n.log), r.ws.bin, "serve", "--config", n.cfgPath, "--log-level", "warn"); err != nil {
		return cu, err
	}
	n.p.health = n.base + "/readyz"
	if err := n.p.waitReady(ctx, w.client.Transport.(*http.Transport).TLSClientConfig, ready); err != nil {
		return cu, err
	}
	cu.Seconds = time.Since(t0).Seconds()
	if cu.Rejoined, err = treeSize(ctx, w.client, n.base, token); err != nil {
		return cu, err
	}
	return cu, nil
}
