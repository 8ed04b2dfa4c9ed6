package ledger_test

import (
	"slices"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func TestHistoryPage(t *testing.T) {
	l, _ := ledgertest.New(t)
	for i := range 7 {
		// Entries of reg/app at 0, 2, 4, ..., 12; of reg/app-x between them.
		mustAppend(t, l, promotion("reg/app", digest(100+i), "dev"))
		mustAppend(t, l, promotion("reg/app-x", digest(200+i), "dev"))
	}
	tests := map[string]struct {
		start    uint64
		limit    int
		maxBytes int
		want     []uint64
		wantMore bool
	}{
		"first page":                            {start: 0, limit: 3, want: []uint64{0, 2, 4}, wantMore: true},
		"from an index of the page":             {start: 6, limit: 3, want: []uint64{6, 8, 10}, wantMore: true},
		"from between two entries":              {start: 7, limit: 3, want: []uint64{8, 10, 12}},
		"last page exactly full":                {start: 8, limit: 3, want: []uint64{8, 10, 12}},
		"past the end":                          {start: 13, limit: 3},
		"no limit":                              {start: 9, want: []uint64{10, 12}},
		"byte budget below one entry keeps one": {start: 2, limit: 3, maxBytes: 1, want: []uint64{2}, wantMore: true},
		"byte budget that does not bind":        {start: 2, limit: 3, maxBytes: 1 << 20, want: []uint64{2, 4, 6}, wantMore: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			page, more, err := l.HistoryPage("reg/app", tc.start, tc.limit, tc.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			var idx []uint64
			for _, e := range page {
				idx = append(idx, e.Index)
				if e.Repository != "reg/app" {
					t.Errorf("entry %d of %s", e.Index, e.Repository)
				}
			}
			if !slices.Equal(idx, tc.want) || more != tc.wantMore {
				t.Errorf("HistoryPage = %v more %v, want %v more %v", idx, more, tc.want, tc.wantMore)
			}
		})
	}
}

// EntriesPage stops at its byte budget while reading, keeping at least
// one entry, so that a page of large entries is never read whole.
func TestEntriesPageByteBudget(t *testing.T) {
	l, _ := ledgertest.New(t)
	for i := range 5 {
		mustAppend(t, l, promotion("reg/app", digest(300+i), "dev"))
	}
	one, err := l.EntriesPage(1, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || one[0].Index != 1 {
		t.Fatalf("EntriesPage(1, 4, 1 byte) = %d entries, want entry 1 alone", len(one))
	}
	all, err := l.EntriesPage(1, 4, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 4 || all[3].Index != 4 {
		t.Fatalf("EntriesPage(1, 4, 1 MiB) = %d entries, want 1 to 4", len(all))
	}
}
