package cli

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
)

// TestPromoteFreezeOverride: app.Build wires a stage's windows; during a
// freeze `stagegate promote` is refused saying when the stage opens, and
// `--freeze-override --reason` from freezeOverrideGroups promotes. The
// freeze spans centuries, so the real clock is inside it whenever the
// test runs.
func TestPromoteFreezeOverride(t *testing.T) {
	srv := startTLSServer(t, []api.Token{{SHA256: api.HashToken("ci-token"), Subject: "ci", Groups: []string{"pipeline"}}},
		func(cfg *config.Config) {
			cfg.Stages[0].Windows = []config.Window{{Deny: "long freeze", Start: "2000-01-01T00:00:00Z", End: "2999-01-01T00:00:00Z"}}
			cfg.Stages[0].FreezeOverrideGroups = []string{"pipeline"}
		})
	a, sample, ca := srv.app, srv.sample, srv.caFile
	promote := func(args ...string) (string, error) {
		var out, errb syncBuf
		cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &errb,
			LookupEnv: func(k string) (string, bool) { return "ci-token", k == config.TokenEnv }})
		cmd.SetArgs(append([]string{"promote", sample.Image, "--stage", "dev", "--progress", "none", "--server", srv.url, "--ca-file", ca, "-o", os.DevNull}, args...))
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
