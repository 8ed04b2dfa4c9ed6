package ledger_test

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// stateRecord returns the stored state record of d in the ledger at path.
func stateRecord(t *testing.T, path, d string) []byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v []byte
	db.View(func(tx *bolt.Tx) error {
		v = append([]byte(nil), tx.Bucket([]byte("state")).Get([]byte(d))...)
		return nil
	})
	if v == nil {
		t.Fatalf("no state record of %s in %s", d, path)
	}
	return v
}

// TestStartupVerifyRepairsAnEditedStateIndex edits the state record of a
// revoked digest in a real file, with bbolt, into the record of a
// promoted one (taken from a ledger where it is promoted and never
// revoked), and opens the file as serve does: the decision must be the
// one the entries make.
func TestStartupVerifyRepairsAnEditedStateIndex(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	d := digest(7)
	write := func(entries ...ledger.Entry) string {
		path := filepath.Join(t.TempDir(), "ledger.db")
		l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			mustAppend(t, l, e)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		return path
	}
	path := write(promotion("reg/app", d, "prod"), promotion("reg/app", digest(8), "prod"), revocation("reg/app", d, "prod"))
	forged := stateRecord(t, write(promotion("reg/app", d, "prod")), d)

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Put([]byte(d), forged) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	// What admission would read without the startup check: promoted.
	l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync(), ledger.WithStateCache(0))
	if err != nil {
		t.Fatal(err)
	}
	if st, _, _ := l.State(d, "prod"); !st.Active() {
		t.Fatalf("the forged record did not take: %+v", st)
	}
	if err := l.Verify(v, nil); err == nil || !strings.Contains(err.Error(), "state index of "+d+" disagrees") {
		t.Fatalf("Verify: %v; want the edited state record named", err)
	}
	l.Close()

	var logged bytes.Buffer
	l, err = ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync(), ledger.WithStateCache(0), ledger.WithStartupVerify(v),
		ledger.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	if err != nil {
		t.Fatalf("Open WithStartupVerify: %v", err)
	}
	// The repair is reported through the ledger's logger.
	if !strings.Contains(logged.String(), "rebuilding the indexes") || !strings.Contains(logged.String(), d) {
		t.Errorf("WithLogger got %q; want the repair and the digest", logged.String())
	}
	st, ok, err := l.State(d, "prod")
	if err != nil || !ok || st.Active() || !st.Revoked || st.RevokedIndex != 2 {
		t.Fatalf("State after WithStartupVerify = %+v, %v, %v; want revoked at 2", st, ok, err)
	}
	if st, _, _ := l.State(digest(8), "prod"); !st.Active() {
		t.Fatalf("the other digest lost its promotion: %+v", st)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// The repair is on disk, not only in this process.
	if got := stateRecord(t, path, d); string(got) == string(forged) {
		t.Fatal("the forged record is still stored")
	}
}

// TestUnreadableStateRecordIsAnError: a state record that does not decode
// is an error from Ledger.State and from the Reader a BuildFunc gets, not
// "known but inactive", so that a promotion deciding on it fails.
func TestUnreadableStateRecordIsAnError(t *testing.T) {
	s, _ := ledgertest.Keys(t, ledgertest.Origin)
	path := filepath.Join(t.TempDir(), "ledger.db")
	d := digest(7)
	l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, promotion("reg/app", d, "prod"))
	l.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("state")).Put([]byte(d), []byte{0xff}) }); err != nil {
		t.Fatal(err)
	}
	db.Close()

	l, err = ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, _, err := l.State(d, "prod"); !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "state of "+d) {
		t.Errorf("Ledger.State: %v; want the unreadable record named", err)
	}
	_, err = l.Append(func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		if _, _, err := r.State(d, "prod"); err != nil {
			return nil, err
		}
		t.Error("Reader.State of an unreadable record gave no error")
		return fixed(promotion("reg/app", d, "prod"))(r, index)
	})
	if !errors.Is(err, ledger.ErrCorrupt) || !strings.Contains(err.Error(), "state of "+d) {
		t.Errorf("Append: %v; want the Reader's error", err)
	}
	if size, _ := l.Size(); size != 1 {
		t.Errorf("size %d after a refused append, want 1", size)
	}
}

// TestStartupVerifyRefusesEditedEntries: an edited entry is no index
// problem; it is refused, not rebuilt from.
func TestStartupVerifyRefusesEditedEntries(t *testing.T) {
	s, v := ledgertest.Keys(t, ledgertest.Origin)
	path := filepath.Join(t.TempDir(), "ledger.db")
	l, err := ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, promotion("reg/app", digest(1), "prod"))
	mustAppend(t, l, revocation("reg/app", digest(1), "prod"))
	l.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("entries"))
		k := []byte{0, 0, 0, 0, 0, 0, 0, 1}
		raw := strings.Replace(string(b.Get(k)), `"stage":"prod"`, `"stage":"dev"`, 1)
		return b.Put(k, []byte(raw))
	})
	db.Close()
	l, err = ledger.Open(path, ledger.WithSigner(s), ledger.WithNoSync(), ledger.WithStartupVerify(v))
	var ve *ledger.VerifyError
	if err == nil {
		l.Close()
		t.Fatal("Open WithStartupVerify accepted an edited entry")
	}
	if !errors.As(err, &ve) || ve.Index != 1 || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("Open WithStartupVerify: %v; want a *VerifyError naming entry 1", err)
	}
}

// BenchmarkVerifyStartup measures serve's open (WithStartupVerify) of a
// warm file, and the file pages left in the process's RSS afterwards:
//
//	go test ./internal/ledger -run '^$' -bench VerifyStartup -benchtime 3x
func BenchmarkVerifyStartup(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(formatCount(n), func(b *testing.B) {
			l, v, _ := signedLedger(b, n)
			path := l.Path()
			l.Close()
			for b.Loop() {
				l, err := ledger.Open(path, ledger.WithNoSync(), ledger.WithStartupVerify(v))
				if err != nil {
					b.Fatal(err)
				}
				// Close may compact the file: that is shutdown's cost.
				b.StopTimer()
				l.Close()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/open")
			b.ReportMetric(rssFileMB(), "MB-rss-file")
		})
	}
}

// rssFileMB is the file-backed part of this process's RSS.
func rssFileMB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "RssFile:" {
			kb, _ := strconv.Atoi(f[1])
			return float64(kb) / 1024
		}
	}
	return 0
}

func formatCount(n int) string {
	if n >= 100_000 {
		return "1e5"
	}
	return "1e4"
}
