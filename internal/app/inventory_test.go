package app

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

// TestReaches: the digests a ledger entry re-checks are its own and its
// platforms', and for a revocation those of the promotions it ends: a pod
// may name the index or any platform of it, and a revocation names one.
func TestReaches(t *testing.T) {
	l, _ := ledgertest.New(t)
	d := func(c string) string { return "sha256:" + strings.Repeat(c, 64) }
	index, p1, p2, loose := d("1"), d("2"), d("3"), d("4")
	at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	appendEntry := func(kind ledger.Kind, digest, stage string, platforms ...string) ledger.Entry {
		t.Helper()
		at = at.Add(time.Minute)
		rc, err := l.Append(func(_ ledger.Reader, i uint64) (*ledger.Entry, error) {
			return &ledger.Entry{Index: i, Kind: kind, Repository: "r/app", Digest: digest, Stage: stage, Platforms: platforms,
				Subject: "sec", Reason: "e2e", Time: at, Envelope: []byte(`{}`)}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return rc.Entry
	}
	c := &continuous{ledger: l, stages: []string{"test", "prod"}, log: slog.New(slog.DiscardHandler)}
	promotion := appendEntry(ledger.KindPromotion, index, "test", p1, p2)
	// In order: each case's entries build on the ledger of the one before.
	tests := []struct {
		name  string
		entry func() ledger.Entry
		want  []string
	}{
		{name: "a promotion of an index reaches its platforms", entry: func() ledger.Entry { return promotion }, want: []string{index, p1, p2}},
		{name: "a revocation of the index reaches its platforms through the promotion",
			entry: func() ledger.Entry { return appendEntry(ledger.KindRevocation, index, "test") }, want: []string{index, p1, p2}},
		{name: "a revocation of a platform reaches the index and its siblings",
			entry: func() ledger.Entry {
				appendEntry(ledger.KindPromotion, index, "prod", p1, p2)
				return appendEntry(ledger.KindRevocation, p1, ledger.AllStages)
			}, want: []string{index, p1, p2}},
		{name: "a revocation of a digest promoted nowhere reaches itself",
			entry: func() ledger.Entry { return appendEntry(ledger.KindRevocation, loose, ledger.AllStages) }, want: []string{loose}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := slices.Clone(tc.want)
			slices.Sort(want)
			if got := c.reaches(tc.entry()); !slices.Equal(got, want) {
				t.Errorf("reaches = %v, want %v", got, want)
			}
		})
	}
}
