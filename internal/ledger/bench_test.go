package ledger_test

import (
	"path/filepath"
	"sync/atomic"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// BenchmarkState is the admission hot path on a ledger of 10k entries.
func BenchmarkState(b *testing.B) {
	l, _ := ledgertest.New(b)
	const n = 10_000
	for i := range n {
		stage := []string{"dev", "test", "prod"}[i%3]
		mustAppend(b, l, promotion("reg/app", digest(i%2000), stage, digest(100_000+i%2000)))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		st, _, err := l.State(digest(i%2000), "prod")
		if err != nil || st.Digest == "" {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkAppend(b *testing.B) {
	tests := []struct {
		name string
		opts func(b *testing.B, v note.Verifier) []ledger.Option
	}{
		{"nosync", func(*testing.B, note.Verifier) []ledger.Option { return []ledger.Option{ledger.WithNoSync()} }},
		{"durable", func(*testing.B, note.Verifier) []ledger.Option { return nil }},
		// The checkpoint guard adds a write, two fsyncs and a rename per
		// commit (serve's ledger.checkpointFile).
		{"durable+guard", func(b *testing.B, v note.Verifier) []ledger.Option {
			return []ledger.Option{ledger.WithCheckpointGuard(filepath.Join(b.TempDir(), "checkpoint"), v)}
		}},
	}
	for _, tt := range tests {
		b.Run(tt.name, func(b *testing.B) {
			s, v := ledgertest.Keys(b, ledgertest.Origin)
			l, err := ledger.Open(filepath.Join(b.TempDir(), "l.db"), append(tt.opts(b, v), ledger.WithSigner(s))...)
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				mustAppend(b, l, promotion("reg/app", digest(i), "dev"))
				i++
			}
		})
	}
}

// BenchmarkAppendParallel shows what batching buys: concurrent durable
// appends share commits, so ns/op falls well below one fsync.
func BenchmarkAppendParallel(b *testing.B) {
	s, _ := ledgertest.Keys(b, ledgertest.Origin)
	l, err := ledger.Open(filepath.Join(b.TempDir(), "l.db"), ledger.WithSigner(s))
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			mustAppend(b, l, promotion("reg/app", digest(int(next.Add(1))), "dev"))
		}
	})
}
