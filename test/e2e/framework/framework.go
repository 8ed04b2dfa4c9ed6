// Package framework starts the real parts the end-to-end tests run against:
// a Kubernetes API server with etcd (controller-runtime envtest), the CNCF
// distribution registry, and binaries built from this repository.
//
// StartStagegate is the one way the suites start `stagegate serve`: it
// builds the binary once per test binary, lays out an installation (keys,
// certificates, tokens, config), waits for /readyz with a bounded context
// and hands back a handle to stop, kill, restart or signal it. Package
// process under it starts, polls and stops child processes without
// testing, so that bench/ shares it.
//
// The external binaries are built from the Go module proxy by
// hack/tools.sh into the git-ignored bin/ directory; helpers fail the test
// with the command to run when one is missing, rather than skipping, so
// that a missing tool is never mistaken for a passing e2e run.
package framework

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// modulePath identifies the repository root: the nested wrapper modules
// under tools/ have go.mod files of their own.
const modulePath = "github.com/stagegate/stagegate"

// RepoRoot returns the directory holding the stagegate go.mod, found by
// walking up from the working directory (go test runs in the package dir).
func RepoRoot(t testing.TB) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatalf("framework: %v", err)
	}
	return root
}

func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("repo root: %w", err)
	}
	for {
		if isStagegateModule(filepath.Join(dir, "go.mod")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repo root: no go.mod for " + modulePath + " above the working directory")
		}
		dir = parent
	}
}

func isStagegateModule(gomod string) bool {
	f, err := os.Open(gomod)
	if err != nil {
		return false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if fields := strings.Fields(s.Text()); len(fields) == 2 && fields[0] == "module" {
			return strings.Trim(fields[1], `"`) == modulePath
		}
	}
	return false
}

// Tool returns bin/<name...> under the repository root, the path
// hack/tools.sh builds tool into. A missing tool fails the test, with the
// command that builds it, under CI and elsewhere alike: an e2e suite
// without its real parts tests nothing, and a skip would read as a pass.
func Tool(t testing.TB, tool string, name ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{RepoRoot(t), "bin"}, name...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("framework: %s not found (%v): run hack/tools.sh %s (or make tools)", p, err, tool)
	}
	return p
}

// InCI reports whether the tests run under CI (CI=true, as CI services
// set it).
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// SkipUnlessCI skips the test with why and how to run it, or fails it
// under CI: there a precondition that does not hold is a broken CI
// machine, not a reason to pass.
func SkipUnlessCI(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("%s (CI=true, so this fails rather than skips)", msg)
		return
	}
	t.Skipf("%s (with CI=true this fails instead)", msg)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it; on loopback in a
// test that is rare enough to accept.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("framework: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// built caches BuildBinary results for the life of the test process: the
// e2e tests start many stagegate processes but need only one build.
var built struct {
	mu   sync.Mutex
	dir  string
	pkgs map[string]*buildResult
}

type buildResult struct {
	once sync.Once
	n    int // subdirectory: two packages may share a base name
	path string
	err  error
}

// BuildBinary runs `go build` for pkg (an import path or a path relative to
// the repository root, e.g. "./cmd/stagegate") once per test process and
// returns the binary's path. Later calls, from any test, reuse it.
//
// The binary lives in a per-process temporary directory rather than
// t.TempDir, which would be removed when the first test using it ends;
// call Main (or RemoveBinaries) from TestMain to delete it.
func BuildBinary(t testing.TB, pkg string) string {
	t.Helper()
	root := RepoRoot(t)

	built.mu.Lock()
	if built.pkgs == nil {
		built.pkgs = make(map[string]*buildResult)
	}
	r, ok := built.pkgs[pkg]
	if !ok {
		r = &buildResult{n: len(built.pkgs)}
		built.pkgs[pkg] = r
	}
	built.mu.Unlock()

	r.once.Do(func() { r.path, r.err = build(root, pkg, r.n) })
	if r.err != nil {
		t.Fatalf("framework: %v", r.err)
	}
	return r.path
}

func build(root, pkg string, n int) (string, error) {
	built.mu.Lock()
	if built.dir == "" {
		dir, err := os.MkdirTemp("", "stagegate-e2e-bin-")
		if err != nil {
			built.mu.Unlock()
			return "", fmt.Errorf("build %s: %w", pkg, err)
		}
		built.dir = dir
	}
	out := filepath.Join(built.dir, fmt.Sprint(n), filepath.Base(pkg))
	built.mu.Unlock()

	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	var output bytes.Buffer
	cmd.Stdout = &output
	cmd.Stderr = &output
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, output.Bytes())
	}
	return out, nil
}

// Main runs the tests of an e2e package and then deletes what BuildBinary
// built: call it as TestMain's only statement.
func Main(m *testing.M) {
	code := m.Run()
	if err := RemoveBinaries(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

// RemoveBinaries deletes what BuildBinary built. Call it from TestMain after
// m.Run; without it the binaries stay in the system temporary directory.
func RemoveBinaries() error {
	built.mu.Lock()
	defer built.mu.Unlock()
	if built.dir == "" {
		return nil
	}
	err := os.RemoveAll(built.dir)
	built.dir = ""
	built.pkgs = nil
	return err
}
