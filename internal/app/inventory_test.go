package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// A kubeconfig that cannot be read fails Build with the setting's name,
// and the ledger is closed again.
func TestBuildContinuousValidationBadKubeconfig(t *testing.T) {
	cfg := testConfig(t)
	p := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(p, []byte("not: [a kubeconfig"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.ContinuousValidation.Enabled, cfg.ContinuousValidation.Kubeconfig = true, p
	if a, err := Build(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "continuousValidation.kubeconfig") {
		if a != nil {
			a.Close()
		}
		t.Fatalf("Build = %v, want an error naming continuousValidation.kubeconfig", err)
	}
	l, err := ledger.Open(cfg.LedgerPath(), ledger.WithLockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatalf("the failed Build left the ledger open: %v", err)
	}
	l.Close()
}
