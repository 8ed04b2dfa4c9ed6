package ledger_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/testutil/fuzzseed"
)

var writeCorpus = flag.Bool("write-corpus", false, "also write the fuzz seeds to testdata/fuzz/<FuzzName>/")

// TestMain bounds the minimization of new inputs (fuzzseed.MinimizeLimit).
func TestMain(m *testing.M) { os.Exit(fuzzseed.Main(m)) }

// Fixed checkpoint keys, so that the seeds (exports and receipts signed
// with them) stay valid in the corpus across runs. They sign nothing else.
// They cost nothing to make, unlike signingtest's, which are made per
// process and would leave every kept seed a forgery on the next run.
const (
	fuzzSignerKey   = "PRIVATE+KEY+stagegate.test/ledger+83705f01+AXekTMwxiSfcdLnXyUjv07yf1Cr/V178qPDH26C69Ob+"
	fuzzVerifierKey = "stagegate.test/ledger+83705f01+AePqFoZy1Y52DPS8kP+DvC2eADCEKVngQb1TXCmXSmny"
	// otherSignerKey has the same name and another key: a forger's.
	otherSignerKey = "PRIVATE+KEY+stagegate.test/ledger+4add78c0+AQ2ZKR7Gwd30+kyl1KHABBZPNHdDPNhtiXAA9D6xHFWf"
)

func fuzzKeys(tb testing.TB, skey string) (note.Signer, note.Verifier) {
	tb.Helper()
	s, err := note.NewSigner(skey)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := note.NewVerifier(fuzzVerifierKey)
	if err != nil {
		tb.Fatal(err)
	}
	return s, v
}

// fuzzHistory is a small deterministic ledger: its exports after each
// append, the receipts Append returned, and the canonical entry lines.
type fuzzHistory struct {
	exports  [][]byte
	receipts []ledger.Receipt
	lines    [][]byte
}

func buildHistory(tb testing.TB, skey string) fuzzHistory {
	tb.Helper()
	s, _ := fuzzKeys(tb, skey)
	l, err := ledger.Open(filepath.Join(tb.TempDir(), "ref.db"), ledger.WithSigner(s), ledger.WithNoSync())
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	var h fuzzHistory
	for _, e := range []ledger.Entry{
		promotion("reg.example/app", digest(1), "dev", digest(11)),
		promotion("reg.example/app", digest(1), "test"),
		revocation("reg.example/app", digest(1), ledger.AllStages),
		{Kind: ledger.KindBreakGlass, Workload: "ns/Pod/x", Images: []string{"reg.example/app@" + digest(1)}, Reason: "incident"},
	} {
		h.receipts = append(h.receipts, mustAppend(tb, l, e))
		var buf bytes.Buffer
		if err := l.Export(&buf); err != nil {
			tb.Fatal(err)
		}
		h.exports = append(h.exports, buf.Bytes())
	}
	last := h.exports[len(h.exports)-1]
	for _, line := range bytes.Split(bytes.TrimSuffix(last, []byte("\n")), []byte("\n")) {
		h.lines = append(h.lines, line)
	}
	h.lines = h.lines[:len(h.lines)-1] // the checkpoint trailer
	return h
}

// fuzzDir is a temporary directory in memory when the system has one:
// every successful import reopens a ledger, and bbolt's fsyncs on a busy
// disk would otherwise dominate the run.
func fuzzDir(f *testing.F) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if dir, err := os.MkdirTemp("/dev/shm", "stagegate-fuzz-"); err == nil {
			f.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return f.TempDir()
}

// FuzzImport imports arbitrary exports into a fresh ledger. Import never
// panics; when it fails, nothing was written; when it succeeds, the ledger
// verifies and holds exactly entries the real log signed. Only checkpoints
// signed with the fixed key can pass, so a tampered export cannot.
func FuzzImport(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	h := buildHistory(f, fuzzSignerKey)
	for _, e := range h.exports {
		c.Add(e)
	}
	// The entries of the format's worked example, the leaf data lines of
	// ledger-format.golden: real entries under a checkpoint of another
	// tree of the same size, whose root they do not match.
	c.Files(filepath.Join("testdata", "ledger-format.golden"), func(_ string, body []byte) [][]any {
		var entries [][]byte
		lines := bytes.Split(body, []byte("\n"))
		for i, line := range lines {
			if bytes.Contains(line, []byte("leaf data (")) && i+1 < len(lines) {
				entries = append(entries, lines[i+1])
			}
		}
		export := h.exports[len(entries)-1]
		trailer := export[bytes.LastIndexByte(bytes.TrimSuffix(export, []byte("\n")), '\n')+1:]
		return [][]any{{append(bytes.Join(entries, []byte("\n")), append([]byte("\n"), trailer...)...)}}
	})
	full := h.exports[len(h.exports)-1]
	lines := strings.Split(strings.TrimSuffix(string(full), "\n"), "\n")
	swapped := append([]string{lines[1], lines[0]}, lines[2:]...)
	c.Add([]byte(strings.Join(swapped, "\n")))
	c.Add([]byte(strings.Join(append(lines[:1], lines[2:]...), "\n")))
	c.Add(bytes.Replace(full, []byte(`"stage":"dev"`), []byte(`"stage":"prod"`), 1))
	c.Add(full[:len(full)/2])
	c.Add(buildHistory(f, otherSignerKey).exports[3])
	c.Add([]byte(`{"checkpoint":""}`))
	c.Add([]byte("\n\n"))

	s, v := fuzzKeys(f, fuzzSignerKey)
	// Import reads through a 1 MiB bufio.Reader, so that an export of 10^6
	// entries streams, unless it is handed one at least that large. Made
	// per input, clearing it took half of each input's time; one reader,
	// reset onto each input, is a caller bufio documents, and Import reads
	// exactly the same bytes.
	br := bufio.NewReaderSize(nil, 1<<20)
	// One ledger serves every failed import, which must leave it empty:
	// that is the property under test, and opening (and, on Close,
	// compacting) a bbolt file per input would make fuzzing crawl.
	dir, n := fuzzDir(f), 0
	var l *ledger.Ledger
	f.Cleanup(func() {
		if l != nil {
			l.Close()
		}
	})
	f.Fuzz(func(t *testing.T, data []byte) {
		if l == nil {
			n++
			var err error
			if l, err = ledger.Open(filepath.Join(dir, fmt.Sprintf("l%d.db", n)), ledger.WithSigner(s), ledger.WithNoSync()); err != nil {
				t.Fatal(err)
			}
		}
		br.Reset(bytes.NewReader(data))
		if err := l.Import(br, v, nil); err != nil {
			if size, _ := l.Size(); size != 0 {
				t.Fatalf("failed import (%v) wrote %d entries", err, size)
			}
			if _, cerr := l.Checkpoint(); cerr == nil {
				t.Fatalf("failed import (%v) wrote a checkpoint", err)
			}
			return
		}
		defer func() { l.Close(); l = nil }()
		if err := l.Verify(v, nil); err != nil {
			t.Fatalf("imported ledger does not verify: %v", err)
		}
		var buf bytes.Buffer
		if err := l.Export(&buf); err != nil {
			if size, _ := l.Size(); size == 0 {
				return // an empty, validly signed checkpoint is no forgery
			}
			t.Fatal(err)
		}
		got := bytes.Split(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
		got = got[:len(got)-1]
		if len(got) > len(h.lines) {
			t.Fatalf("imported %d entries, the log only ever signed %d", len(got), len(h.lines))
		}
		for i := range got {
			if !bytes.Equal(got[i], h.lines[i]) {
				t.Fatalf("imported entry %d differs from the signed one:\n%s\nwant\n%s", i, got[i], h.lines[i])
			}
		}
	})
}

// FuzzVerifyReceipt verifies arbitrary receipts. VerifyReceipt never
// panics, and a receipt that verifies carries exactly an entry the log
// signed, at its index (the hashes of a proof that verifies are the only
// ones for that index and size, so they need no separate check).
func FuzzVerifyReceipt(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	h := buildHistory(f, fuzzSignerKey)
	for _, rc := range h.receipts {
		b, err := json.Marshal(rc)
		if err != nil {
			f.Fatal(err)
		}
		c.Add(b)
	}
	// A proof for another entry, and a checkpoint from another key.
	mixed := h.receipts[3]
	mixed.Entry = h.receipts[2].Entry
	b, _ := json.Marshal(mixed)
	c.Add(b)
	forged := buildHistory(f, otherSignerKey).receipts[3]
	b, _ = json.Marshal(forged)
	c.Add(b)
	c.Add([]byte(`{}`))
	c.Add([]byte(`{"entry":{"index":18446744073709551615,"kind":"promotion"},"inclusionProof":{"leafIndex":18446744073709551615,"treeSize":0}}`))

	_, v := fuzzKeys(f, fuzzSignerKey)
	f.Fuzz(func(t *testing.T, data []byte) {
		var rc ledger.Receipt
		if err := json.Unmarshal(data, &rc); err != nil {
			return
		}
		if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
			return
		}
		leaf, err := json.Marshal(&rc.Entry)
		if err != nil {
			t.Fatal(err)
		}
		i := rc.Entry.Index
		if i >= uint64(len(h.lines)) || !bytes.Equal(leaf, h.lines[i]) {
			t.Fatalf("receipt for an entry the log never signed verifies: %s", leaf)
		}
	})
}
