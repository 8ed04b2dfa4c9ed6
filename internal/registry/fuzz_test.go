package registry

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/stagegate/stagegate/internal/testutil/fuzzseed"
)

var writeCorpus = flag.Bool("write-corpus", false, "also write the fuzz seeds to testdata/fuzz/<FuzzName>/")

// TestMain bounds the minimization of new inputs (fuzzseed.MinimizeLimit).
func TestMain(m *testing.M) { os.Exit(fuzzseed.Main(m)) }

// imageField finds the image references of the workload manifests.
var imageField = regexp.MustCompile(`image: *"?([^"\s,}]+)`)

// FuzzParseReference checks what ParseReference accepts: never a panic;
// a digest it accepts is exactly the lowercase sha256 digest after the last
// '@' of the input; no repository with ".."; and its own output parses back
// to the same reference.
func FuzzParseReference(f *testing.F) {
	corpus := fuzzseed.New(f, *writeCorpus)
	// The references of the admission fixtures: what pods really name.
	corpus.Files(filepath.Join("..", "admission", "testdata", "*.yaml"), func(_ string, body []byte) [][]any {
		var out [][]any
		for _, m := range imageField.FindAllSubmatch(body, -1) {
			out = append(out, []any{string(m[1])})
		}
		return out
	})
	d := "sha256:" + strings.Repeat("a", 64)
	for _, s := range []string{
		"nginx:1.27", "reg.example:5000/team/app:1.0", "reg.example/app@" + d, "reg.example/app:1.0@" + d,
		"reg.example/app:1.0@sha256:" + strings.Repeat("A", 64), "reg.example/app@sha256:abc", "app@sha512:" + strings.Repeat("a", 128),
		"reg.example/a/../b:1", "reg.example/a/..:1", " app:1", "app:1\x00", "APP:1", "reg.example/аpp:1", "app", "@" + d,
		"127.0.0.1:5001/sample/app:1.0", "localhost/app:" + strings.Repeat("t", 200), "a@b@" + d, "a:b:c",
	} {
		corpus.Add(s)
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
