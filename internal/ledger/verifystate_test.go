package ledger_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// TestVerifyNamesFirstBadStateRecord edits stored state records of a
// ledger with more digests than finish checks in one batch, and on both
// workers' shares of a batch: Verify names the first edited digest in key
// order, every time, whichever worker meets which.
func TestVerifyNamesFirstBadStateRecord(t *testing.T) {
	const digests = 3000
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	src := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(src, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	var batch []*ledger.Entry
	for i := range digests {
		e := promotion("reg/app", digest(i), "dev")
		e.Index, e.Time = uint64(i), t0.Add(time.Duration(i)*time.Second)
		batch = append(batch, &e)
	}
	bulkLoad(t, l, nil, batch...)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// garbage does not decode; moved is another digest's record, which
	// decodes and is canonical but is not what the entries imply.
	const garbage, moved = "garbage", "moved"
	tests := []struct {
		name  string
		edits map[int]string
		want  int
	}{
		{"one", map[int]string{2500: moved}, 2500},
		{"two in one batch, first on worker 0", map[int]string{1030: garbage, 1031: moved}, 1030},
		{"two in one batch, first on worker 1", map[int]string{1031: moved, 1032: garbage}, 1031},
		{"in two batches", map[int]string{2999: garbage, 100: moved}, 100},
		{"first and last", map[int]string{0: moved, digests - 1: moved}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), "copy.db")
			if err := os.WriteFile(path, data, 0o600); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				st := tx.Bucket([]byte("state"))
				for i, how := range tt.edits {
					rec := []byte(garbage)
					if how == moved {
						rec = append([]byte(nil), st.Get([]byte(digest((i+7)%digests)))...)
					}
					if err := st.Put([]byte(digest(i)), rec); err != nil {
						return err
					}
				}
				return nil
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			c, err := ledger.Open(path, ledger.WithReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			want := fmt.Sprintf("state index of %s disagrees", digest(tt.want))
			for range 5 {
				var verr *ledger.VerifyError
				if err := c.Verify(v, nil); !errors.As(err, &verr) || !strings.Contains(err.Error(), want) {
					t.Fatalf("Verify: %v; want %q", err, want)
				}
			}
		})
	}
}
