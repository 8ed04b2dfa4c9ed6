package registry

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

var writeCorpus = flag.Bool("write-corpus", false, "also write the fuzz seeds to testdata/fuzz/<FuzzName>/")

// addSeed adds a seed to f and, with -write-corpus, keeps it in the
// package's corpus in go's corpus format, so that plain `go test` replays it.
func addSeed(f *testing.F, s string) {
	f.Helper()
	f.Add(s)
	if !*writeCorpus {
		return
	}
	b := []byte("go test fuzz v1\nstring(" + strconv.Quote(s) + ")\n")
	dir := filepath.Join("testdata", "fuzz", f.Name())
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	sum := sha256.Sum256(b)
	if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%x", sum[:8])), b, 0o644); err != nil {
		f.Fatal(err)
	}
}

// FuzzParseReference checks what ParseReference accepts: never a panic;
// a digest it accepts is exactly the lowercase sha256 digest after the last
// '@' of the input; no repository with ".."; and its own output parses back
// to the same reference.
func FuzzParseReference(f *testing.F) {
	d := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		"nginx:1.27", "reg.example:5000/team/app:1.0", "reg.example/app@" + d, "reg.example/app:1.0@" + d,
		"reg.example/app:1.0@sha256:" + strings.Repeat("A", 64), "reg.example/app@sha256:abc", "app@sha512:" + strings.Repeat("a", 128),
		"reg.example/a/../b:1", "reg.example/a/..:1", " app:1", "app:1\x00", "APP:1", "reg.example/аpp:1", "app", "@" + d,
		"127.0.0.1:5001/sample/app:1.0", "localhost/app:" + strings.Repeat("t", 200), "a@b@" + d, "a:b:c",
	} {
		addSeed(f, s)
	}
	c := New(WithHost("127.0.0.1:5001", Host{Insecure: true}))
	f.Fuzz(func(t *testing.T, s string) {
		r, err := c.ParseReference(s)
		if err != nil {
			return
		}
		if strings.Contains(r.Context().RepositoryStr(), "..") {
			t.Fatalf("ParseReference(%q) accepted repository %q", s, r.Context().RepositoryStr())
		}
		if dg, ok := r.(name.Digest); ok {
			want := s[strings.LastIndexByte(s, '@')+1:]
			if dg.DigestStr() != want || !ValidDigest(want) {
				t.Fatalf("ParseReference(%q) digest %q, want %q", s, dg.DigestStr(), want)
			}
		} else if strings.Contains(s, "@") {
			t.Fatalf("ParseReference(%q) dropped the digest: %s", s, r)
		}
		again, err := c.ParseReference(r.Name())
		if err != nil {
			t.Fatalf("ParseReference(%q) gave %q, which does not parse: %v", s, r.Name(), err)
		}
		if again.Name() != r.Name() {
			t.Fatalf("ParseReference(%q) = %q, then %q", s, r.Name(), again.Name())
		}
	})
}
