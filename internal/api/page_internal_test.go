package api

import (
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

// trimPage stops a page at maxPageBytes whatever the entries weigh, keeps
// at least one entry, and says where the next page starts.
func TestTrimPage(t *testing.T) {
	heavy := func(i uint64) ledger.Entry {
		return ledger.Entry{Index: i, Envelope: []byte(`"` + strings.Repeat("x", 1<<20) + `"`)}
	}
	light := func(i uint64) ledger.Entry { return ledger.Entry{Index: i} }
	tests := map[string]struct {
		page     []ledger.Entry
		more     bool
		wantLen  int
		wantNext int64 // -1: none
	}{
		"light page, last":       {page: []ledger.Entry{light(0), light(1)}, wantLen: 2, wantNext: -1},
		"light page, more":       {page: []ledger.Entry{light(0), light(1)}, more: true, wantLen: 2, wantNext: 2},
		"heavy entries are cut":  {page: []ledger.Entry{heavy(0), heavy(1), heavy(2), heavy(3), heavy(4)}, wantLen: 2, wantNext: 2},
		"one huge entry is kept": {page: []ledger.Entry{{Index: 9, Envelope: make([]byte, 8<<20)}}, wantLen: 1, wantNext: -1},
		"empty":                  {wantLen: 0, wantNext: -1},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, next := trimPage(tc.page, tc.more)
			if len(got) != tc.wantLen {
				t.Errorf("len = %d, want %d", len(got), tc.wantLen)
			}
			switch {
			case tc.wantNext < 0 && next != nil:
				t.Errorf("next = %d, want none", *next)
			case tc.wantNext >= 0 && (next == nil || *next != uint64(tc.wantNext)):
				t.Errorf("next = %v, want %d", next, tc.wantNext)
			}
		})
	}
}
