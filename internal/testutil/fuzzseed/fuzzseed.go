// Package fuzzseed seeds the corpora of stagegate's fuzz targets: from
// values a test writes, and from the real bodies kept under testdata (the
// workload manifests, the ledger's format example), so that fuzzing starts
// from what stagegate really receives instead of from nothing.
//
// With write set, each seed is also kept in the package's
// testdata/fuzz/<FuzzName>/ in go's corpus format, so that plain `go test`
// replays it even where the seed's source changes later. The test packages
// own the flag that sets it (-write-corpus): a library package defines no
// flags.
//
// It lives apart from signing/signingtest, which hands out keys: a fuzz
// seed is no signing material, and api, registry and admission seed
// corpora without any key.
package fuzzseed

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Corpus adds seeds to one fuzz target.
type Corpus struct {
	f     *testing.F
	write bool
}

// New returns the corpus of f; write also keeps the seeds in testdata.
func New(f *testing.F, write bool) *Corpus {
	return &Corpus{f: f, write: write}
}

// Add adds one seed, the arguments of one call of the fuzz function. Only
// []byte and string arguments are supported: they are all stagegate's
// targets take.
func (c *Corpus) Add(args ...any) {
	c.f.Helper()
	c.f.Add(args...)
	if !c.write {
		return
	}
	var b bytes.Buffer
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case []byte:
			fmt.Fprintf(&b, "[]byte(%s)\n", strconv.Quote(string(v)))
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		default:
			c.f.Fatalf("fuzzseed: unsupported type %T", a)
		}
	}
	dir := filepath.Join("testdata", "fuzz", c.f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.f.Fatal(err)
	}
	sum := sha256.Sum256(b.Bytes())
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), b.Bytes(), 0o644); err != nil {
		c.f.Fatal(err)
	}
}

// Files adds the seeds that seeds makes of each file matching pattern
// (filepath.Glob, relative to the package's directory): none, one or many
// per file. A pattern that matches nothing fails the target, so that a
// moved testdata directory cannot quietly leave a corpus without its real
// bodies.
func (c *Corpus) Files(pattern string, seeds func(name string, body []byte) [][]any) {
	c.f.Helper()
	names, err := filepath.Glob(pattern)
	if err != nil {
		c.f.Fatalf("fuzzseed: %s: %v", pattern, err)
	}
	if len(names) == 0 {
		c.f.Fatalf("fuzzseed: no file matches %s", pattern)
	}
	for _, name := range names {
		body, err := os.ReadFile(name)
		if err != nil {
			c.f.Fatalf("fuzzseed: %v", err)
		}
		for _, args := range seeds(name, body) {
			c.Add(args...)
		}
	}
}

// MinimizeLimit bounds the minimization of each new input, in calls of the
// fuzz function, when the command line does not say otherwise. Go's
// default is 60 s, and its minimizer tries removing every subset of bytes
// of an input: for an export or a review of a few KB that does not end
// within a run of 5 or 10 s, so the run spent its time shrinking the first
// new input instead of fuzzing, and go test never counted those execs
// (FuzzImport showed 15 execs in 10 s). A count, not a time, so that a run
// does the same work on a busy machine. A crasher is still minimized, this
// far; run with -fuzzminimizetime 60s to shrink one further.
const MinimizeLimit = "1000x"

// Main runs the tests of a package with fuzz targets, with minimization
// bounded by MinimizeLimit unless -fuzzminimizetime is given. Call it from
// the package's TestMain.
func Main(m *testing.M) int {
	flag.Parse()
	given := false
	flag.Visit(func(fl *flag.Flag) { given = given || fl.Name == "test.fuzzminimizetime" })
	if !given {
		if err := flag.Set("test.fuzzminimizetime", MinimizeLimit); err != nil {
			fmt.Fprintln(os.Stderr, "fuzzseed:", err)
			return 2
		}
	}
	return m.Run()
}
