package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

func testConfig(t *testing.T) *config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Keys = config.Keys{Dir: filepath.Join(dir, "keys")}
	cfg.TokensFile = ""
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cfg.TokensFile = ""
	if err := signing.GenerateKeys(cfg.Keys.Dir, nil, cfg.LogOrigin); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A Build that fails after opening the ledger closes it: the next open
// gets the lock.
func TestBuildClosesWhatItOpenedOnError(t *testing.T) {
	cfg := testConfig(t)
	cfg.PolicyDir = filepath.Join(t.TempDir(), "no-policies")
	if a, err := Build(context.Background(), cfg); err == nil {
		a.Close()
		t.Fatal("Build with a missing policy directory succeeded")
	}
	l, err := ledger.Open(cfg.LedgerPath(), ledger.WithLockTimeout(100*time.Millisecond))
	if err != nil {
		t.Fatalf("the failed Build left the ledger open: %v", err)
	}
	l.Close()
}

func TestBuildReadOnly(t *testing.T) {
	cfg := testConfig(t)
	a, err := Build(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a.Service == nil || a.Handler == nil || a.Keys.Signer == nil {
		t.Fatalf("writable App lacks parts: %+v", a)
	}
	// serve holds the ledger: check is told so.
	if ro, err := Build(context.Background(), cfg, WithReadOnly()); !errors.Is(err, ledger.ErrLocked) {
		if ro != nil {
			ro.Close()
		}
		t.Fatalf("read-only Build beside a running one: %v, want ErrLocked", err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	// check needs no private key, and builds no writer.
	if err := os.Remove(cfg.Keys.CosignKey); err != nil {
		t.Fatal(err)
	}
	ro, err := Build(context.Background(), cfg, WithReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := ro.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if ro.Service != nil || ro.Handler != nil || ro.Keys.Signer != nil || ro.Keys.LogSigner != nil || ro.Reviewer == nil || ro.Keys.Verifier == nil {
		t.Fatalf("read-only App: %+v", ro)
	}
	if err := ro.Start(context.Background()); err == nil {
		t.Error("a second Start succeeded")
	}
}
