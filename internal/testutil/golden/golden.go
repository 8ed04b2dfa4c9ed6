// Package golden compares test output with a file in testdata/, the one
// way every package's golden tests do it. Each test package keeps its own
// -update flag (no flags here) and passes its value.
package golden

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// Assert fails t unless got equals the file at path. With update set, it
// first writes got there, so that `go test -update` and a review of the
// diff is how an intended change lands.
func Assert(t testing.TB, path string, got []byte, update bool) {
	t.Helper()
	if update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden: %v (run the test with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("golden: output differs from %s (run the test with -update if the change is intended, and review the diff):\ngot:\n%s\nwant:\n%s", path, got, want)
	}
}
