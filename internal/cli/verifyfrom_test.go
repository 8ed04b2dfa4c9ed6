package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `ledger verify --from` takes a checkpoint seen before (here the one in
// entry 1's receipt, at size 2) and verifies only what came after it.
func TestLedgerVerifyFrom(t *testing.T) {
	dir, rc := seededLedger(t)
	from := filepath.Join(t.TempDir(), "checkpoint")
	if err := os.WriteFile(from, []byte(rc.Checkpoint), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "ledger", "verify", "--data-dir", dir, "--from", from)
	if err != nil || !strings.Contains(out, "extends the checkpoint of 2 entries") || !strings.Contains(out, "the 1 entries after it") {
		t.Fatalf("verify --from: %v %q", err, out)
	}

	// Entry 2 (after the checkpoint) edited in a copy: named.
	if _, _, err := run(t, "ledger", "compact", "--data-dir", dir); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(b, []byte(`"reason":"third"`))
	if at < 0 {
		t.Fatal("entry 2 not found in the file")
	}
	b[at+len(`"reason":"t`)] ^= 0x01
	tampered := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "ledger", "verify", "--data-dir", dir, "--ledger", tampered, "--from", from); err == nil || !strings.Contains(err.Error(), "entry 2") {
		t.Fatalf("verify --from of a copy with entry 2 edited = %v, want an error naming entry 2", err)
	}

	// A checkpoint not signed by the log key is refused before anything.
	forged := filepath.Join(t.TempDir(), "forged")
	if err := os.WriteFile(forged, []byte(strings.Replace(rc.Checkpoint, "\n2\n", "\n3\n", 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "ledger", "verify", "--data-dir", dir, "--from", forged); err == nil || !strings.Contains(err.Error(), "--from") {
		t.Fatalf("verify --from a forged checkpoint = %v, want a refusal naming --from", err)
	}
}
