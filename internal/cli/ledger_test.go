package cli

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// buildBinary builds cmd/stagegate, so that a crash (SIGBUS, panic) shows
// as what a user would see, not as a failed test process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stagegate")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/stagegate/stagegate/cmd/stagegate")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestDamagedLedgerFileIsReportedNotCrashedOn cuts a real ledger at
// several offsets and runs the real binary's `ledger verify` and `ledger
// import` on it, and app.Build (what `serve` runs) in process.
func TestDamagedLedgerFileIsReportedNotCrashedOn(t *testing.T) {
	dir, _ := seededLedger(t)
	bin := buildBinary(t)
	full, err := os.ReadFile(filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	export, _, err := run(t, "ledger", "export", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	exportFile := filepath.Join(t.TempDir(), "export.jsonl")
	os.WriteFile(exportFile, []byte(export), 0o600)
	tests := map[string]struct {
		size int
		msg  string
	}{
		"meta page cut":     {size: 40, msg: "has no valid bbolt meta page"},
		"after meta page 0": {size: 4096, msg: "ledger.db is 4096 bytes but its pages reach"},
		"after both metas":  {size: 8192, msg: "the file was truncated; restore it from a backup or `stagegate ledger import` a verified export"},
		"half":              {size: len(full) / 2 / 4096 * 4096, msg: "the file was truncated"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cut := filepath.Join(t.TempDir(), "ledger.db")
			if err := os.WriteFile(cut, full[:tc.size], 0o600); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"ledger", "verify", "--data-dir", dir, "--ledger", cut},
				{"ledger", "import", exportFile, "--data-dir", dir, "--ledger", cut},
			} {
				cmd := exec.Command(bin, args...)
				var stderr strings.Builder
				cmd.Stderr = &stderr
				err := cmd.Run()
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != 1 {
					t.Fatalf("%s: %v, want exit status 1\n%s", args[1], err, stderr.String())
				}
				got := stderr.String()
				if !strings.Contains(got, tc.msg) {
					t.Errorf("%s: stderr %q\nwant it to say %q", args[1], got, tc.msg)
				}
				for _, crash := range []string{"SIGBUS", "goroutine", "panic"} {
					if strings.Contains(got, crash) {
						t.Errorf("%s: stderr has %q:\n%s", args[1], crash, got)
					}
				}
			}
			if fi, _ := os.Stat(cut); fi.Size() != int64(tc.size) {
				t.Errorf("the damaged file was changed to %d bytes", fi.Size())
			}

			// serve: the same refusal from app.Build.
			cfg := testConfig(t, dir)
			cfg.DataDir = filepath.Dir(cut)
			cfg.Keys.Dir = filepath.Join(dir, "keys")
			cfg.Keys.CosignKey, cfg.Keys.CosignPub, cfg.Keys.LogKey, cfg.Keys.LogPub = "", "", "", ""
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			a, err := app.Build(context.Background(), cfg)
			if err == nil {
				a.Close()
				t.Fatal("app.Build served a damaged ledger")
			}
			if !errors.Is(err, ledger.ErrTruncated) && !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("app.Build: %v; want %q", err, tc.msg)
			}
		})
	}
}

func testConfig(t *testing.T, dir string) *config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.TokensFile = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TokensFile = ""
	return cfg
}

// TestLedgerCompact: `ledger compact` refuses a ledger serve has open,
// compacts it once serve is stopped, and the ledger still verifies.
func TestLedgerCompact(t *testing.T) {
	dir, rc := seededLedger(t)
	cfg := testConfig(t, dir)
	a, err := app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// More commits, so that free pages hold stale copies of entries.
	for _, stage := range []string{"test", "dev"} {
		if _, err := a.Service.Revoke(context.Background(), promotion.Revocation{Digest: rc.Entry.Digest, Repository: rc.Entry.Repository,
			Stage: stage, Reason: "CVE", Requester: policy.Identity{Subject: "sec", Groups: []string{"pipeline"}}}); err != nil {
			t.Fatal(err)
		}
	}
	_, _, err = run(t, "ledger", "compact", "--data-dir", dir)
	a.Close()
	if !errors.Is(err, ledger.ErrLocked) || !strings.Contains(err.Error(), "is another stagegate running?") {
		t.Fatalf("ledger compact while serve runs: %v; want ErrLocked", err)
	}

	const entries = 5
	stale := func() (n int) {
		b, err := os.ReadFile(cfg.LedgerPath())
		if err != nil {
			t.Fatal(err)
		}
		for i := range entries {
			switch c := bytes.Count(b, fmt.Appendf(nil, `{"index":%d,`, i)); c {
			case 0:
				t.Fatalf("entry %d is not in the file", i)
			default:
				n += c - 1
			}
		}
		return n
	}
	if stale() == 0 {
		t.Fatal("no stale copy of an entry before compacting: the test shows nothing")
	}
	out, _, err := run(t, "ledger", "compact", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "compacted") {
		t.Fatalf("ledger compact: %v\n%s", err, out)
	}
	if n := stale(); n != 0 {
		t.Errorf("%d stale copies of entries after ledger compact, want none", n)
	}
	if out, _, err := run(t, "ledger", "verify", "--data-dir", dir); err != nil || !strings.Contains(out, fmt.Sprintf("%d entries", entries)) {
		t.Fatalf("ledger verify after compact: %v\n%s", err, out)
	}
}

// TestImportOfEditedExportNamesTheEntry edits one entry of a real export
// and imports it into a new data directory.
func TestImportOfEditedExportNamesTheEntry(t *testing.T) {
	dir, _ := seededLedger(t)
	export, _, err := run(t, "ledger", "export", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(export, "\n")
	tests := map[string]struct {
		edit func(lines []string)
		msg  []string
	}{
		"signed field edited": {
			edit: func(l []string) { l[1] = strings.Replace(l[1], `"stage":"test"`, `"stage":"prod"`, 1) },
			msg:  []string{"entry 1", `predicate stage "test", entry stage "prod"`},
		},
		"unsigned field edited": {
			edit: func(l []string) { l[2] = strings.Replace(l[2], `"reason":"third"`, `"reason":"thirD"`, 1) },
			msg:  []string{"the 3 entries hash to root", "but the checkpoint says", "a field its attestation does not cover"},
		},
		"entry not canonical": {
			edit: func(l []string) { l[0] = strings.Replace(l[0], `"kind":`, `"kind": `, 1) },
			msg:  []string{"entry 0", "not canonical"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			edited := append([]string(nil), lines...)
			tc.edit(edited)
			in := filepath.Join(t.TempDir(), "export.jsonl")
			os.WriteFile(in, []byte(strings.Join(edited, "")), 0o600)
			target := filepath.Join(t.TempDir(), "ledger.db")
			_, _, err := run(t, "ledger", "import", in, "--data-dir", dir, "--ledger", target)
			if err == nil {
				t.Fatal("edited export imported")
			}
			for _, m := range tc.msg {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("import: %v\nwant it to say %q", err, m)
				}
			}
			if _, serr := os.Stat(target); !errors.Is(serr, os.ErrNotExist) {
				t.Errorf("a refused import left %s behind (%v)", target, serr)
			}
		})
	}
}

// TestReceiptVerifyNamesWhatDiffers: each kind of damage to a real
// receipt is named, with short hashes, on one line.
func TestReceiptVerifyNamesWhatDiffers(t *testing.T) {
	dir, rc := seededLedger(t)
	keys := filepath.Join(dir, "keys")
	cosignPub := filepath.Join(keys, "cosign.pub")
	tests := map[string]struct {
		mutate func(*ledger.Receipt)
		msg    []string
	}{
		"digest edited": {
			mutate: func(r *ledger.Receipt) { r.Entry.Digest = "sha256:" + strings.Repeat("0", 64) },
			msg:    []string{"entry: differs from its attestation", "subject digest"},
		},
		"attestation signature edited": {
			mutate: func(r *ledger.Receipt) {
				var env map[string]any
				json.Unmarshal(r.Entry.Envelope, &env)
				sig := env["signatures"].([]any)[0].(map[string]any)
				b, _ := base64.StdEncoding.DecodeString(sig["sig"].(string))
				b[len(b)/2] ^= 1
				sig["sig"] = base64.StdEncoding.EncodeToString(b)
				r.Entry.Envelope, _ = json.Marshal(env)
			},
			msg: []string{"attestation: signature does not verify with " + cosignPub},
		},
		"unsigned field edited": {
			mutate: func(r *ledger.Receipt) { r.Entry.Reason = "edited" },
			msg:    []string{"inclusion proof: entry 1 and its proof lead to root", "does not match checkpoint root", "at size 2"},
		},
		"proof hash edited": {
			mutate: func(r *ledger.Receipt) { r.Inclusion.Hashes[0] = make([]byte, 32) },
			msg:    []string{"inclusion proof: entry 1 and its proof lead to root"},
		},
		"proof root edited": {
			mutate: func(r *ledger.Receipt) { r.Inclusion.RootHash = make([]byte, 32) },
			msg:    []string{"inclusion proof: root 000000000000… does not match checkpoint root", "at size 2"},
		},
		"proof for another size": {
			mutate: func(r *ledger.Receipt) { r.Inclusion.TreeSize = 3 },
			msg:    []string{"inclusion proof: for a tree of size 3, but the checkpoint is at size 2"},
		},
	}
	// Digests are names, and may be quoted whole; anything else that long
	// is a dump.
	digests, longHex := regexp.MustCompile(`sha256:[0-9a-f]{64}`), regexp.MustCompile(`[0-9a-f]{40}`)
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			bad := rc
			bad.Inclusion.Hashes = append([][]byte(nil), rc.Inclusion.Hashes...)
			tc.mutate(&bad)
			b, _ := json.Marshal(bad)
			p := filepath.Join(t.TempDir(), "receipt.json")
			os.WriteFile(p, b, 0o644)
			_, _, err := run(t, "receipt", "verify", p, "--key", cosignPub, "--log-key", filepath.Join(keys, "log.pub"))
			if err == nil {
				t.Fatal("damaged receipt verified")
			}
			msg := err.Error()
			for _, m := range tc.msg {
				if !strings.Contains(msg, m) {
					t.Errorf("receipt verify: %v\nwant it to say %q", err, m)
				}
			}
			if strings.Contains(msg, "\n") || longHex.MatchString(digests.ReplaceAllString(msg, "")) {
				t.Errorf("receipt verify dumps bytes: %q", msg)
			}
		})
	}
}

// TestServeDecidesFromTheEntriesNotAnEditedStateIndex revokes a real
// promotion, then marks the digest promoted again by editing its state
// record with bbolt (the record from before the revocation), and starts
// the app as serve does.
func TestServeDecidesFromTheEntriesNotAnEditedStateIndex(t *testing.T) {
	dir, rc := seededLedger(t)
	cfg := testConfig(t, dir)
	path := cfg.LedgerPath()
	record := func() []byte {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v []byte
		db.View(func(tx *bolt.Tx) error {
			v = append([]byte(nil), tx.Bucket([]byte("state")).Get([]byte(rc.Entry.Digest))...)
			return nil
		})
		return v
	}
	before := record()
	a, err := app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Service.Revoke(context.Background(), promotion.Revocation{Digest: rc.Entry.Digest, Repository: rc.Entry.Repository,
		Stage: "test", Reason: "CVE", Requester: policy.Identity{Subject: "sec", Groups: []string{"pipeline"}}}); err != nil {
		t.Fatal(err)
	}
	a.Close()

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Put([]byte(rc.Entry.Digest), before) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	a, err = app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatalf("app.Build: %v", err)
	}
	defer a.Close()
	st, ok, err := a.Ledger.State(rc.Entry.Digest, "test")
	if err != nil || !ok || st.Active() || !st.Revoked {
		t.Fatalf("serve's view of the revoked digest: %+v, %v, %v; want revoked", st, ok, err)
	}
}

// TestServeRefusesARolledBackLedger: with ledger.checkpointFile set, the
// app (serve) keeps each checkpoint it hands out, and refuses to start on
// a copy of the ledger from before a revocation, saying how to recover.
func TestServeRefusesARolledBackLedger(t *testing.T) {
	dir, rc := seededLedger(t)
	cfg := testConfig(t, dir)
	cfg.Ledger.CheckpointFile = filepath.Join(t.TempDir(), "guard", "checkpoint")
	start := func() (*app.App, error) {
		return app.Build(context.Background(), cfg)
	}
	a, err := start()
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	old, err := os.ReadFile(cfg.LedgerPath())
	if err != nil {
		t.Fatal(err)
	}
	a, err = start()
	if err != nil {
		t.Fatal(err)
	}
	res, err := a.Service.Revoke(context.Background(), promotion.Revocation{Digest: rc.Entry.Digest, Repository: rc.Entry.Repository,
		Stage: "test", Reason: "CVE", Requester: policy.Identity{Subject: "sec", Groups: []string{"pipeline"}}})
	if err != nil {
		t.Fatal(err)
	}
	if kept, _ := os.ReadFile(cfg.Ledger.CheckpointFile); string(kept) != res.Receipt.Checkpoint {
		t.Fatalf("the guard does not hold the checkpoint of the revocation's receipt:\n%s", kept)
	}
	a.Close()
	newer, _ := os.ReadFile(cfg.LedgerPath())

	if err := os.WriteFile(cfg.LedgerPath(), old, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err = start()
	if err == nil {
		a.Close()
		t.Fatal("serve started on the ledger from before the revocation")
	}
	for _, m := range []string{"has 3 entries, but this server already published a checkpoint of 4", "restore the newer ledger",
		"stagegate ledger verify", "remove " + cfg.Ledger.CheckpointFile + " deliberately"} {
		if !errors.Is(err, ledger.ErrRolledBack) || !strings.Contains(err.Error(), m) {
			t.Errorf("app.Build: %v\nwant ErrRolledBack saying %q", err, m)
		}
	}

	// The audit the message points to says the same, offline.
	verify := func() (string, error) {
		out, _, err := run(t, "ledger", "verify", "--data-dir", dir, "--checkpoint-file", cfg.Ledger.CheckpointFile)
		return out, err
	}
	if _, err := verify(); !errors.Is(err, ledger.ErrRolledBack) || !strings.Contains(err.Error(), "it is an older copy") {
		t.Errorf("ledger verify --checkpoint-file on the old copy: %v; want ErrRolledBack", err)
	}

	// Recovery: the newer ledger back in place.
	os.WriteFile(cfg.LedgerPath(), newer, 0o600)
	if out, err := verify(); err != nil || !strings.Contains(out, "it extends the checkpoint kept in") {
		t.Errorf("ledger verify --checkpoint-file on the newer ledger: %v\n%s", err, out)
	}
	a, err = start()
	if err != nil {
		t.Fatalf("app.Build on the restored ledger: %v", err)
	}
	a.Close()
}
