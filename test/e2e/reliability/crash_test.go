package reliability

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

const (
	crashClients   = 4
	crashPerClient = 6                      // promotions per client per cycle, at most
	crashMaxUptime = 300 * time.Millisecond // kill after a random 0..this once ready
)

// crashCycles is STAGEGATE_SOAK_CYCLES, or 100 (10 with -short).
func crashCycles(t *testing.T) int {
	if s := os.Getenv("STAGEGATE_SOAK_CYCLES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("STAGEGATE_SOAK_CYCLES=%q: want a positive integer", s)
		}
		return n
	}
	if testing.Short() {
		return 10
	}
	return 100
}

// crashSeed is STAGEGATE_CRASH_SEED, or a fresh one; it is logged so that a
// failing kill schedule can be replayed (as far as timing allows).
func crashSeed(t *testing.T) uint64 {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("STAGEGATE_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("STAGEGATE_CRASH_SEED=%q: %v", s, err)
		}
	}
	t.Logf("crash seed %d (replay with STAGEGATE_CRASH_SEED=%d)", seed, seed)
	return seed
}

// ack is a promotion that got a 201.
type ack struct {
	ref   string
	index uint64
	leaf  []byte // canonical entry bytes of the receipt
}

// imageFeed pushes distinct images into the registry ahead of the clients
// that promote them.
func (e *env) imageFeed(ctx context.Context, repo string, workers int) <-chan string {
	ch := make(chan string, 64)
	for range workers {
		go func() {
			for {
				ref, err := e.pushImage(repo)
				if err != nil {
					if ctx.Err() == nil {
						e.t.Errorf("push: %v", err)
					}
					return
				}
				select {
				case ch <- ref:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	return ch
}

// TestCrashConsistency SIGKILLs `stagegate serve` at random moments while
// several clients promote distinct digests, and checks after every restart
// that every acknowledged promotion is in the ledger, byte for byte, at the
// index of its receipt; that the new checkpoint extends every checkpoint
// seen before; and that the ledger holds no partial entry.
func TestCrashConsistency(t *testing.T) {
	cycles := crashCycles(t)
	rng := rand.New(rand.NewPCG(crashSeed(t), 0x5747))
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg, withTokens(crashClients))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	feed := e.imageFeed(ctx, "crash/app", 2)

	var (
		mu      sync.Mutex
		acks    []ack
		maxAckd ledger.Checkpoint // the largest checkpoint any client was given
	)
	var seen ledger.Checkpoint // the checkpoint after the previous restart
	srv := e.sg.Start()
	for cycle := range cycles {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range crashClients {
			wg.Go(func() {
				for range crashPerClient {
					var ref string
					select {
					case <-stop:
						return
					case ref = <-feed:
					}
					code, body, err := e.promote(e.tokens[c], ref)
					if err != nil {
						return // the server died under the request: outcome unknown
					}
					if code != http.StatusCreated {
						t.Errorf("cycle %d: promote %s: %d %s", cycle, ref, code, body)
						return
					}
					rc, cp, err := e.receipt(body)
					if err != nil {
						t.Errorf("cycle %d: receipt of %s does not verify: %v", cycle, ref, err)
						return
					}
					mu.Lock()
					acks = append(acks, ack{ref: ref, index: rc.Entry.Index, leaf: canonical(t, rc.Entry)})
					if cp.Size > maxAckd.Size {
						maxAckd = cp
					}
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(rng.Int64N(int64(crashMaxUptime) + 1)))
		srv.Kill()
		close(stop)
		wg.Wait()
		e.client.CloseIdleConnections()
		if t.Failed() {
			t.FailNow()
		}
		if cycle%20 == 19 || cycle == cycles-1 {
			e.mustLedgerVerify()
		}
		srv = e.sg.Start()
		seen = e.checkAfterCrash(cycle, seen, maxAckd, acks, rng)
	}
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
	e.mustLedgerVerify()
	t.Logf("%d cycles: %d promotions acknowledged, ledger size %d", cycles, len(acks), seen.Size)
	if len(acks) == 0 {
		t.Fatal("no promotion was acknowledged: the kill schedule tested nothing")
	}
}

// checkAfterCrash runs after a restart and returns the new checkpoint.
func (e *env) checkAfterCrash(cycle int, seen, maxAckd ledger.Checkpoint, acks []ack, rng *rand.Rand) ledger.Checkpoint {
	t := e.t
	t.Helper()
	cp := e.checkpoint()
	for _, older := range []ledger.Checkpoint{seen, maxAckd} {
		if err := e.checkConsistent(older, cp); err != nil {
			t.Fatalf("cycle %d: checkpoint of size %d is not consistent with the earlier one of size %d: %v", cycle, cp.Size, older.Size, err)
		}
	}
	// The entries appended since the last restart: contiguous, each with
	// its own index, and none beyond the checkpoint (no partial entry).
	fresh := map[uint64][]byte{}
	for start := seen.Size; ; {
		var page struct {
			Entries []ledger.Entry `json:"entries"`
		}
		e.get(fmt.Sprintf("/v1/ledger/entries?start=%d&limit=1000", start), &page)
		if len(page.Entries) == 0 {
			break
		}
		for _, en := range page.Entries {
			if en.Index != start {
				t.Fatalf("cycle %d: entry at position %d says index %d", cycle, start, en.Index)
			}
			fresh[start] = canonical(t, en)
			start++
		}
	}
	if got := seen.Size + uint64(len(fresh)); got != cp.Size {
		t.Fatalf("cycle %d: %d entries readable, checkpoint says %d", cycle, got, cp.Size)
	}
	// Acknowledged entries of the last cycle, byte for byte; a sample of
	// older ones, which the consistency proofs already cover.
	for i, a := range acks {
		got, ok := fresh[a.index]
		if !ok && a.index >= seen.Size {
			t.Fatalf("cycle %d: acknowledged promotion of %s at index %d is lost (ledger size %d)", cycle, a.ref, a.index, cp.Size)
		}
		if !ok {
			if rng.IntN(len(acks)) >= 5 && i != 0 {
				continue
			}
			var page struct {
				Entries []ledger.Entry `json:"entries"`
			}
			e.get(fmt.Sprintf("/v1/ledger/entries?start=%d&limit=1", a.index), &page)
			if len(page.Entries) != 1 {
				t.Fatalf("cycle %d: acknowledged entry %d is gone", cycle, a.index)
			}
			got = canonical(t, page.Entries[0])
		}
		if !bytes.Equal(got, a.leaf) {
			t.Fatalf("cycle %d: entry %d differs from its receipt:\nledger:  %s\nreceipt: %s", cycle, a.index, got, a.leaf)
		}
	}
	return cp
}

// TestStartupRefusesCorruptTail corrupts the stored ledger in ways only a
// re-verification notices, and checks that serve refuses to start with a
// message that names the problem and the recovery command, and that the
// untouched file still serves.
func TestStartupRefusesCorruptTail(t *testing.T) {
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg)
	e.sg.Start()
	for _, ref := range e.pushMany("corrupt/app", 3) {
		if code, body, err := e.promote(e.tokens[0], ref); err != nil || code != http.StatusCreated {
			t.Fatalf("promote: %d %v %s", code, err, body)
		}
	}
	entries := e.entries()
	var cpText string
	e.get("/v1/ledger/checkpoint", &cpText)
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	last := canonical(t, entries[len(entries)-1])
	dbPath := filepath.Join(e.dataDir, "ledger.db")
	pristine, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		// stored is bytes that must occur in the file; flip is the offset
		// inside them of the byte to change.
		stored []byte
		flip   int
		// want is in serve's refusal; verify names the same entry (or
		// checkpoint), in its own words.
		want, verify string
	}{
		"byte flipped in the last entry's reason": {
			stored: last, flip: bytes.Index(last, []byte("reliability test")),
			// Startup re-hashes every entry into the signed root, and names
			// the first whose leaf the stored tree disagrees with.
			want:   fmt.Sprintf("entry %d: stored tree disagrees", len(entries)-1),
			verify: fmt.Sprintf("entry %d", len(entries)-1),
		},
		"byte flipped in the last entry's digest": {
			stored: last, flip: bytes.Index(last, []byte(`"digest":"sha256:`)) + len(`"digest":"sha256:`),
			want:   fmt.Sprintf("entry %d", len(entries)-1),
			verify: fmt.Sprintf("entry %d", len(entries)-1),
		},
		"byte flipped in the checkpoint root": {
			stored: []byte(cpText), flip: len(logOrigin) + 3,
			want:   "bad checkpoint",
			verify: "checkpoint",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.flip < 0 {
				t.Fatal("test bug: nothing to flip")
			}
			bad := bytes.Clone(tc.stored)
			bad[tc.flip] ^= 0x01
			corrupt := bytes.ReplaceAll(pristine, tc.stored, bad)
			if bytes.Equal(corrupt, pristine) {
				t.Fatalf("%q not found in %s", tc.stored, dbPath)
			}
			if err := os.WriteFile(dbPath, corrupt, 0o600); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := os.WriteFile(dbPath, pristine, 0o600); err != nil {
					t.Fatal(err)
				}
			}()

			s := e.sg.Spawn()
			err := exitWithin(t, s, 60*time.Second)
			out := s.Output()
			if err == nil {
				t.Fatalf("serve started on a corrupted ledger and exited 0:\n%s", out)
			}
			for _, want := range []string{
				"refusing to serve a ledger that fails verification",
				tc.want,
				"stagegate ledger verify --data-dir " + e.dataDir,
				"stagegate ledger import",
			} {
				if !strings.Contains(out, want) {
					t.Errorf("serve output does not mention %q:\n%s", want, out)
				}
			}
			if vout, err := e.ledgerVerify(); err == nil || !strings.Contains(vout, tc.verify) {
				t.Errorf("ledger verify on the corrupted file: err %v, output does not name %q:\n%s", err, tc.verify, vout)
			}
		})
	}

	// The recovery the message suggests, restoring a good copy, works.
	e.sg.Start()
	if got := e.checkpoint(); got.Size != uint64(len(entries)) {
		t.Errorf("restored ledger has %d entries, want %d", got.Size, len(entries))
	}
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
}
