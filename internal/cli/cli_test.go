package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// run executes the command line in-process and returns its output.
func run(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
	cmd.SetArgs(args)
	err = cmd.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// seededLedger makes a data dir with keys and a ledger of three promotions,
// made through the real promotion service, and returns the data dir and the
// receipt of entry 1.
func seededLedger(t *testing.T) (string, ledger.Receipt) {
	t.Helper()
	dir := t.TempDir()
	if _, _, err := run(t, "keys", "generate", "--dir", filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.TokensFile = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TokensFile = ""
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	var second ledger.Receipt
	for i, req := range []promotion.Request{
		{Image: sample.Image, Stage: "dev", Reason: "first"},
		{Image: sample.Image, Stage: "test", Reason: "second"},
		{Image: sample.Index, Stage: "dev", Reason: "third"},
	} {
		req.Requester.Subject, req.Requester.Groups = "ci", []string{"pipeline"}
		res, err := a.Service.Promote(context.Background(), req)
		if err != nil || !res.Created {
			t.Fatalf("promotion %d: %v", i, err)
		}
		if i == 1 {
			second = res.Receipt
		}
	}
	return dir, second
}

func TestLedgerVerifyNamesTheTamperedEntry(t *testing.T) {
	dir, _ := seededLedger(t)
	out, _, err := run(t, "ledger", "verify", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "3 entries") {
		t.Fatalf("verify of a good ledger: %v %q", err, out)
	}

	// bbolt's free pages may hold stale copies of entry 1; compact first so
	// that the only copy left is the one verify reads.
	if _, _, err := run(t, "ledger", "compact", "--data-dir", dir); err != nil {
		t.Fatalf("compact: %v", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	// Flip one byte of entry 1's reason in a copy of the file.
	at := bytes.Index(b, []byte(`"reason":"second"`))
	if at < 0 {
		t.Fatal("entry 1 not found in the file")
	}
	b[at+len(`"reason":"s`)] ^= 0x01
	tampered := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(tampered, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = run(t, "ledger", "verify", "--data-dir", dir, "--ledger", tampered)
	if err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("verify of a tampered copy = %v, want an error naming entry 1", err)
	}
}

func TestReceiptVerify(t *testing.T) {
	dir, rc := seededLedger(t)
	keys := filepath.Join(dir, "keys")
	write := func(rc ledger.Receipt) string {
		b, _ := json.Marshal(rc)
		p := filepath.Join(t.TempDir(), "receipt.json")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	args := func(p string) []string {
		return []string{"receipt", "verify", p, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub")}
	}
	out, _, err := run(t, args(write(rc))...)
	if err != nil || !strings.Contains(out, "receipt verified") {
		t.Fatalf("good receipt: %v %q", err, out)
	}
	if !strings.Contains(rc.Checkpoint, fmt.Sprintf("\n%d\n", rc.Inclusion.TreeSize)) {
		t.Fatalf("checkpoint does not carry the proof's size: %q", rc.Checkpoint)
	}
	tests := map[string]func(*ledger.Receipt){
		"stage edited":      func(r *ledger.Receipt) { r.Entry.Stage = "prod" },
		"digest edited":     func(r *ledger.Receipt) { r.Entry.Digest = "sha256:" + strings.Repeat("0", 64) },
		"proof for another": func(r *ledger.Receipt) { r.Inclusion.LeafIndex = 0 },
		"checkpoint edited": func(r *ledger.Receipt) {
			r.Checkpoint = strings.Replace(r.Checkpoint, fmt.Sprintf("\n%d\n", r.Inclusion.TreeSize), "\n9\n", 1)
		},
		"envelope dropped": func(r *ledger.Receipt) { r.Entry.Envelope = nil },
	}
	for name, mutate := range tests {
		t.Run(name, func(t *testing.T) {
			bad := rc
			bad.Entry.Groups = append([]string(nil), rc.Entry.Groups...)
			mutate(&bad)
			if _, _, err := run(t, args(write(bad))...); err == nil || !strings.Contains(err.Error(), "does not verify") {
				t.Fatalf("tampered receipt accepted: %v", err)
			}
		})
	}
}

func TestServeWiring(t *testing.T) {
	var got *config.Config
	var gotOpts serveOptions
	fake := func(_ context.Context, _ Streams, cfg *config.Config, o serveOptions) error {
		got, gotOpts = cfg, o
		return nil
	}
	dir := t.TempDir()
	cmd := newServeCommand(Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, fake)
	cmd.SetArgs([]string{"--dev", "--data-dir", dir, "--listen", "127.0.0.1:9999", "--dev-registry", "127.0.0.1:5999"})
	if err := cmd.ExecuteContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !got.Dev || got.Listen != "127.0.0.1:9999" || got.DataDir != dir || gotOpts.devRegistry != "127.0.0.1:5999" {
		t.Fatalf("wiring: %+v %+v", got, gotOpts)
	}
	if got.Keys.CosignKey != filepath.Join(dir, "keys", "cosign.key") || got.TokensFile != filepath.Join(dir, "tokens.yaml") {
		t.Fatalf("derived paths: %q %q", got.Keys.CosignKey, got.TokensFile)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("stages: [{name: Prod}]\nlisten: x\n"), 0o644)
	cmd = newServeCommand(Streams{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}, fake)
	cmd.SetArgs([]string{"--config", bad})
	if err := cmd.ExecuteContext(context.Background()); err == nil || !strings.Contains(err.Error(), "DNS label") {
		t.Fatalf("invalid config accepted: %v", err)
	}
}
