package app

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// appendEntry appends e as the registry source does: the build only numbers it.
func appendEntry(t *testing.T, l interface {
	Append(ledger.BuildFunc) (ledger.Receipt, error)
}, e ledger.Entry) {
	t.Helper()
	if _, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		e.Index = index
		return &e, nil
	}); err != nil {
		t.Fatal(err)
	}
}

func TestOverlay(t *testing.T) {
	digest := "sha256:" + strings.Repeat("a", 64)
	other := "sha256:" + strings.Repeat("b", 64)
	at := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	entry := func(kind ledger.Kind, d, stage string, foreign bool, minutes int) ledger.Entry {
		return ledger.Entry{Kind: kind, Repository: "example.com/app", Digest: d, Stage: stage, Subject: "ci",
			Time: at.Add(time.Duration(minutes) * time.Minute), Foreign: foreign, Envelope: []byte(`{}`)}
	}
	base, _ := ledgertest.New(t)
	appendEntry(t, base, entry(ledger.KindPromotion, digest, "dev", false, 0))
	appendEntry(t, base, entry(ledger.KindPromotion, other, "prod", false, 0))
	before, err := os.ReadFile(base.Path())
	if err != nil {
		t.Fatal(err)
	}

	ov, err := newOverlay(base)
	if err != nil {
		t.Fatal(err)
	}
	// An import from the registry of digest's promotion to prod.
	appendEntry(t, ov, entry(ledger.KindPromotion, digest, "prod", true, 1))

	tests := map[string]struct {
		digest, stage string
		active        bool
	}{
		"local promotion of an imported digest": {digest, "dev", true},
		"imported promotion":                    {digest, "prod", true},
		"stage neither ledger promoted it to":   {digest, "test", false},
		"digest no import concerns":             {other, "prod", true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			st, ok, err := ov.State(tc.digest, tc.stage)
			if err != nil || !ok || st.Active() != tc.active {
				t.Fatalf("State(%s, %s) = %+v, %v, %v; want found, active %v", tc.digest, tc.stage, st, ok, err, tc.active)
			}
		})
	}
	hist, err := ov.History(digest)
	if err != nil || len(hist) != 2 || hist[0].Stage != "dev" || hist[1].Stage != "prod" {
		t.Fatalf("History(%s) = %+v, %v; want the local dev promotion, then the imported prod one", digest, hist, err)
	}

	// A revocation of every stage, imported later, folds over the copied
	// local promotion too, as it would in one ledger.
	appendEntry(t, ov, entry(ledger.KindRevocation, digest, ledger.AllStages, true, 2))
	if st, _, err := ov.State(digest, "dev"); err != nil || st.Active() {
		t.Fatalf("State after a revocation of all stages = %+v, %v; want revoked", st, err)
	}

	// The local ledger is never written.
	if st, _, err := base.State(digest, "prod"); err != nil || st.Promoted {
		t.Errorf("the local ledger knows the imported promotion: %+v, %v", st, err)
	}
	if err := ov.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(base.Path())
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Error("the local ledger file changed")
	}
	if _, err := os.Stat(ov.dir); !os.IsNotExist(err) {
		t.Errorf("the scratch ledger's directory %s outlives Close: %v", ov.dir, err)
	}
}
