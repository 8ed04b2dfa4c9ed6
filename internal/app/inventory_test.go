package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
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

// Entries the registry source imports reach continuous validation's
// observer, once each, and only those appended.
func TestObservedImports(t *testing.T) {
	l, _ := ledgertest.New(t)
	var seen []ledger.Entry
	o := observedLedger{Ledger: l, observe: func(e ledger.Entry) { seen = append(seen, e) }}
	digest := "sha256:" + strings.Repeat("d", 64)
	rc, err := o.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		return &ledger.Entry{Index: index, Kind: ledger.KindRevocation, Repository: "r/app", Digest: digest, Stage: "prod",
			Subject: "sec", Reason: "CVE", Time: time.Now(), Envelope: []byte(`{}`), Foreign: true}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.Append(func(ledger.Reader, uint64) (*ledger.Entry, error) { return nil, errors.New("refused") }); err == nil {
		t.Fatal("a refused append succeeded")
	}
	if len(seen) != 1 || seen[0].Index != rc.Entry.Index || seen[0].Digest != digest {
		t.Fatalf("observed %+v, want the one imported entry %d", seen, rc.Entry.Index)
	}
}
