package web_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestVerifyJSPageAnswer holds verifyAll to what the page asked for, not
// only to what the log signed: every entry a proxy (or the server) could
// answer here is validly signed and in the tree, yet the answer is not
// the history asked for. Swapping in another image's entries would show a
// revoked digest's page as a clean, "verified" history of promotions; so
// would dropping, repeating or reordering entries of the ledger page.
func TestVerifyJSPageAnswer(t *testing.T) {
	f := newFixture(t)
	p := harness(t)
	d1 := f.entries[0].Digest
	pick := func(idx ...int) []item {
		out := make([]item, len(idx))
		for i, j := range idx {
			out[i] = f.item(j, nil)
		}
		return out
	}
	type opts struct {
		Image string `json:"image,omitempty"`
		Start *int   `json:"start,omitempty"`
	}
	zero, three := 0, 3
	for name, tt := range map[string]struct {
		items []item
		opts  opts
		// bad maps the position of each item that must fail to the
		// words of its message.
		bad map[int]string
	}{
		"history of a digest":                        {items: pick(0, 1, 2), opts: opts{Image: d1}},
		"history of a repository":                    {items: pick(0, 1, 2, 4, 5, 9), opts: opts{Image: repo}},
		"history of a digest with another's entries": {items: pick(0, 4, 5), opts: opts{Image: d1}, bad: map[int]string{1: "not in the history of", 2: "not in the history of"}},
		"history of a repository with a break-glass": {items: pick(0, 3), opts: opts{Image: repo}, bad: map[int]string{1: "not in the history of"}},
		"history with an entry repeated":             {items: pick(0, 1, 1, 2), opts: opts{Image: d1}, bad: map[int]string{2: "out of order"}},
		"history reordered":                          {items: pick(0, 2, 1), opts: opts{Image: d1}, bad: map[int]string{2: "out of order"}},
		"history's next page starts before the last": {items: pick(1, 2), opts: opts{Image: d1, Start: &three}, bad: map[int]string{0: "out of order", 1: "out of order"}},
		"ledger page":                                {items: pick(0, 1, 2, 3, 4), opts: opts{Start: &zero}},
		"ledger page from 3":                         {items: pick(3, 4, 5), opts: opts{Start: &three}},
		"ledger page with an entry dropped":          {items: pick(0, 1, 3, 4), opts: opts{Start: &zero}, bad: map[int]string{2: "wants entry 2", 3: "wants entry 3"}},
		"ledger page with an entry repeated":         {items: pick(0, 1, 1, 2), opts: opts{Start: &zero}, bad: map[int]string{2: "wants entry 2", 3: "wants entry 3"}},
		"ledger page starting elsewhere":             {items: pick(0, 1), opts: opts{Start: &three}, bad: map[int]string{0: "wants entry 3", 1: "wants entry 4"}},
	} {
		t.Run(name, func(t *testing.T) {
			o := p.call(t, "all", f.keys, f.cps[size], tt.items, tt.opts)
			expect(t, o, "", "")
			var r allResult
			if err := json.Unmarshal(o.Value, &r); err != nil {
				t.Fatal(err)
			}
			if len(r.Results) != len(tt.items) {
				t.Fatalf("%d results for %d items", len(r.Results), len(tt.items))
			}
			for i, res := range r.Results {
				want, bad := tt.bad[i]
				switch {
				case bad && res.OK:
					t.Errorf("item %d (entry %d): verified, want it to fail with %q", i, res.Index, want)
				case bad && (res.Check != "leaf" || !strings.Contains(res.Message, want)):
					t.Errorf("item %d (entry %d): failed %s: %q, want the leaf check with %q", i, res.Index, res.Check, res.Message, want)
				case !bad && !res.OK:
					t.Errorf("item %d (entry %d): failed %s: %s", i, res.Index, res.Check, res.Message)
				}
				if !res.OK {
					t.Logf("item %d: %s: %s", i, res.Check, res.Message)
				}
			}
		})
	}
}
