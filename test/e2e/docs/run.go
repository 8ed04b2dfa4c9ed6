package docs

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// show logs what every command printed, for writing a page:
// go test ./test/e2e/docs -run TestPatterns/NAME -v -show.
var show = flag.Bool("show", false, "log what every command of a page printed")

// pageTimeout bounds one page's shell: a command that hangs (a webhook
// that never answers, a prompt) fails the page instead of the suite.
const pageTimeout = 10 * time.Minute

// result is what one command printed (stdout and stderr as a terminal
// shows them, interleaved) and how it exited.
type result struct {
	output []string
	exit   int
}

// runPage runs every command of p in one bash, in dir, with env on top of
// a minimal environment, and returns one result per command in page
// order. Each command runs inside { } so that its variables and cd stay
// for the next, as in a reader's terminal.
func runPage(t *testing.T, p page, dir string, env []string) [][]result {
	t.Helper()
	outDir := t.TempDir()
	var script strings.Builder
	script.WriteString("set +e\ncd " + strconv.Quote(dir) + "\n")
	n := 0
	for _, s := range p.sessions {
		for _, c := range s.commands {
			out := filepath.Join(outDir, strconv.Itoa(n))
			fmt.Fprintf(&script, "{\n%s\n} >%s 2>&1 </dev/null; echo $? >%s.rc\n", c.text, strconv.Quote(out), strconv.Quote(out))
			n++
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), pageTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "--noprofile", "--norc", "-c", script.String())
	cmd.Env = env
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docs: the page's shell failed: %v\n%s", err, out)
	}
	results := make([][]result, len(p.sessions))
	n = 0
	for i, s := range p.sessions {
		for range s.commands {
			out := filepath.Join(outDir, strconv.Itoa(n))
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatalf("docs: command %d left no output: %v", n, err)
			}
			rc, err := os.ReadFile(out + ".rc")
			if err != nil {
				t.Fatalf("docs: command %d left no exit status: %v", n, err)
			}
			code, err := strconv.Atoi(strings.TrimSpace(string(rc)))
			if err != nil {
				t.Fatalf("docs: command %d: exit status %q", n, rc)
			}
			results[i] = append(results[i], result{output: strings.Split(strings.TrimRight(string(b), "\n"), "\n"), exit: code})
			n++
		}
	}
	return results
}

// checkPage compares each command's result with what the page shows, and
// reports every difference (not only the first) with the page's line.
// Outputs show the values of the variables in vars (e.g. the registry's
// loopback address) by the variable's name, as the page does.
func checkPage(t *testing.T, name string, p page, results [][]result, vars map[string]string) {
	t.Helper()
	var pairs []string
	for k, v := range vars {
		pairs = append(pairs, v, "$"+k)
	}
	names := strings.NewReplacer(pairs...)
	for i, s := range p.sessions {
		for j, c := range s.commands {
			r := results[i][j]
			for k, l := range r.output {
				r.output[k] = names.Replace(l)
			}
			if *show {
				t.Logf("%s:%d: $ %s\n(exit %d)\n%s", name, c.line, c.text, r.exit, strings.Join(r.output, "\n"))
			}
			want, got := normalize(c.want), normalize(r.output)
			if r.exit != c.wantExit {
				t.Errorf("%s:%d: $ %s\nexited %d, the page says %d; it printed:\n%s",
					name, c.line, c.text, r.exit, c.wantExit, strings.Join(r.output, "\n"))
				continue
			}
			if !match(want, got) {
				t.Errorf("%s:%d: $ %s\nthe page shows:\n%s\nit printed:\n%s",
					name, c.line, c.text, strings.Join(c.want, "\n"), strings.Join(r.output, "\n"))
			}
		}
	}
}
