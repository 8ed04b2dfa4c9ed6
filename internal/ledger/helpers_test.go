package ledger_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func digest(n int) string { return fmt.Sprintf("sha256:%064x", n) }

func promotion(repo, d, stage string, platforms ...string) ledger.Entry {
	return ledger.Entry{
		Kind: ledger.KindPromotion, Repository: repo, Digest: d, Stage: stage,
		Platforms: platforms, Subject: "ci@example.com", Groups: []string{"ci"},
		Reason: "release", Labels: map[string]string{"team": "a"},
		Envelope: []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`),
	}
}

func revocation(repo, d, stage string) ledger.Entry {
	return ledger.Entry{Kind: ledger.KindRevocation, Repository: repo, Digest: d, Stage: stage, Subject: "sec@example.com", Reason: "CVE"}
}

// fixed returns a BuildFunc that appends e unconditionally.
func fixed(e ledger.Entry) ledger.BuildFunc {
	return func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
		e.Index = index
		e.Time = t0.Add(time.Duration(index) * time.Second)
		return &e, nil
	}
}

func mustAppend(t testing.TB, l *ledger.Ledger, e ledger.Entry) ledger.Receipt {
	t.Helper()
	rc, err := l.Append(fixed(e))
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return rc
}

// bulkLoad imports entries into the empty l with an Importer, check on
// each as Import does.
func bulkLoad(t testing.TB, l *ledger.Ledger, check func(ledger.Entry) error, entries ...*ledger.Entry) {
	t.Helper()
	im, err := l.NewImporter(check)
	if err != nil {
		t.Fatalf("NewImporter: %v", err)
	}
	if err := im.Add(entries...); err != nil {
		im.Close()
		t.Fatalf("Importer.Add: %v", err)
	}
	if err := im.Close(); err != nil {
		t.Fatalf("Importer.Close: %v", err)
	}
}
