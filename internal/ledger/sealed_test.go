package ledger

import (
	"bytes"
	"fmt"
	"testing"
)

func TestSealedStore(t *testing.T) {
	s := newSealedStore()
	want := map[string][]byte{}
	rec := func(d string, n int) []byte { return bytes.Repeat([]byte(d[:1]), n) }
	// Enough digests to need several chunks, each stored, shrunk in place,
	// then grown out of its slot.
	const n = 5000
	for round, size := range []int{40, 20, 100, 100} {
		for i := range n {
			d := fmt.Sprintf("sha256:%064x", i)
			v := rec(fmt.Sprint(round), size+i%7)
			s.put(d, v)
			want[d] = v
		}
	}
	if s.len() != n {
		t.Fatalf("len %d, want %d", s.len(), n)
	}
	for d, v := range want {
		if got := s.get(d); !bytes.Equal(got, v) {
			t.Fatalf("get(%s) = %q, want %q", d, got, v)
		}
	}
	if got := s.get("sha256:absent"); got != nil {
		t.Fatalf("get of an absent digest = %q", got)
	}
	if len(s.chunks) < 2 {
		t.Fatalf("%d chunks: the test did not cross a chunk boundary", len(s.chunks))
	}
	// put copies: changing the caller's slice changes nothing stored.
	v := []byte("abc")
	s.put("d", v)
	v[0] = 'x'
	if got := s.get("d"); string(got) != "abc" {
		t.Fatalf("stored record changed with the caller's slice: %q", got)
	}
}
