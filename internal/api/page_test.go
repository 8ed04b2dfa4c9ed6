package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// TestPagesAreBounded: the history of a repository and the ledger come in
// pages; following next visits every entry once, and no page holds more
// than the limit.
func TestPagesAreBounded(t *testing.T) {
	e := newEnv(t)
	const n = 250
	for i := range n {
		if _, err := e.ledger.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			return &ledger.Entry{Index: index, Kind: ledger.KindPromotion, Repository: "reg.example/shop/busy",
				Digest: fmt.Sprintf("sha256:%064x", i%7), Stage: "dev", Subject: "ci", Time: time.Unix(int64(index), 0).UTC()}, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	follow := func(t *testing.T, first string, entries string) []uint64 {
		var seen []uint64
		path := first
		for pages := 0; ; pages++ {
			if pages > n {
				t.Fatal("pages never end")
			}
			code, body := e.get(t, pipelineToken, path)
			if code != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, code, body)
			}
			var page map[string]json.RawMessage
			if err := json.Unmarshal(body, &page); err != nil {
				t.Fatal(err)
			}
			var es []ledger.Entry
			if err := json.Unmarshal(page[entries], &es); err != nil {
				t.Fatal(err)
			}
			if len(es) > 100 {
				t.Fatalf("a page of %d entries, the default limit is 100", len(es))
			}
			for _, x := range es {
				seen = append(seen, x.Index)
			}
			raw, ok := page["next"]
			if !ok {
				return seen
			}
			var next uint64
			if err := json.Unmarshal(raw, &next); err != nil {
				t.Fatal(err)
			}
			path = fmt.Sprintf("%s?start=%d", first, next)
		}
	}
	check := func(t *testing.T, seen []uint64) {
		if len(seen) != n {
			t.Fatalf("saw %d entries, want %d", len(seen), n)
		}
		for i, idx := range seen {
			if idx != uint64(i) {
				t.Fatalf("entry %d has index %d: an entry was skipped or repeated", i, idx)
			}
		}
	}
	t.Run("history", func(t *testing.T) { check(t, follow(t, "/v1/images/reg.example/shop/busy", "history")) })
	t.Run("ledger", func(t *testing.T) { check(t, follow(t, "/v1/ledger/entries", "entries")) })
	t.Run("limit too large", func(t *testing.T) {
		if code, _ := e.get(t, pipelineToken, "/v1/images/reg.example/shop/busy?limit=5000"); code != http.StatusBadRequest {
			t.Fatalf("limit=5000: %d, want 400", code)
		}
	})
}
