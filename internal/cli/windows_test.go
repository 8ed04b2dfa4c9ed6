package cli

import (
	"context"
	"encoding/pem"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/registry"
)

// TestPromoteFreezeOverride: app.Build wires a stage's windows; during a
// freeze `stagegate promote` is refused saying when the stage opens, and
// `--freeze-override --reason` from freezeOverrideGroups promotes. The
// freeze spans centuries, so the real clock is inside it whenever the
// test runs.
func TestPromoteFreezeOverride(t *testing.T) {
	dir := t.TempDir()
	if _, _, err := run(t, "keys", "generate", "--dir", filepath.Join(dir, "keys")); err != nil {
		t.Fatal(err)
	}
	b, _ := yaml.Marshal(api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken("ci-token"), Subject: "ci", Groups: []string{"pipeline"}}}})
	if err := os.WriteFile(filepath.Join(dir, "tokens.yaml"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Stages[0].Windows = []config.Window{{Deny: "long freeze", Start: "2000-01-01T00:00:00Z", End: "2999-01-01T00:00:00Z"}}
	cfg.Stages[0].FreezeOverrideGroups = []string{"pipeline"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
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
	srv := httptest.NewTLSServer(a.Handler)
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	promote := func(args ...string) (string, error) {
		var out, errb syncBuf
		cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb,
			LookupEnv: func(k string) (string, bool) { return "ci-token", k == config.TokenEnv }})
		cmd.SetArgs(append([]string{"promote", sample.Image, "--stage", "dev", "--progress", "none", "--server", srv.URL, "--ca-file", ca, "-o", os.DevNull}, args...))
		err := cmd.ExecuteContext(context.Background())
		return errb.String(), err
	}

	if _, err := promote("--reason", "build 7"); err == nil || !strings.Contains(err.Error(), "HTTP 403") ||
		!strings.Contains(err.Error(), "opens again at 2999-01-01T00:00:00Z") {
		t.Fatalf("promotion during the freeze: %v", err)
	}
	if _, err := promote("--freeze-override"); err == nil || !strings.Contains(err.Error(), "--freeze-override needs --reason") {
		t.Fatalf("override without a reason: %v", err)
	}
	if size, _ := a.Ledger.Size(); size != 0 {
		t.Fatalf("ledger size %d after refusals, want 0", size)
	}
	stderr, err := promote("--freeze-override", "--reason", "INC-7")
	if err != nil || !strings.Contains(stderr, "promoted ") {
		t.Fatalf("emergency promotion: %v\n%s", err, stderr)
	}
}
