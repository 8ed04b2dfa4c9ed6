package golden

import (
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that keeps whether the check failed, so that
// the failing case is tested without failing this test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true }
func (r *recorder) Helper()               {}

func TestAssert(t *testing.T) {
	path := filepath.Join(t.TempDir(), "testdata", "x.golden")
	tests := map[string]struct {
		update   bool
		got      string
		wantFail bool
	}{
		"missing file":            {got: "a", wantFail: true},
		"update writes the file":  {update: true, got: "a"},
		"equal to the file":       {got: "a"},
		"differs from the file":   {got: "b", wantFail: true},
		"update takes the change": {update: true, got: "b"},
	}
	// In this order: each case sees the file the one before left.
	for _, name := range []string{"missing file", "update writes the file", "equal to the file", "differs from the file", "update takes the change"} {
		tt := tests[name]
		r := &recorder{TB: t}
		Assert(r, path, []byte(tt.got), tt.update)
		if r.failed != tt.wantFail {
			t.Errorf("%s: failed = %v, want %v", name, r.failed, tt.wantFail)
		}
	}
	if b, _ := os.ReadFile(path); string(b) != "b" {
		t.Errorf("file holds %q after the updates, want %q", b, "b")
	}
}
