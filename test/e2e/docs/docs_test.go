package docs

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// TestPatterns runs every page of docs/patterns in the environment it
// names and checks what each command printed against the page, and every
// quoted file against the file.
func TestPatterns(t *testing.T) {
	root := framework.RepoRoot(t)
	paths, err := filepath.Glob(filepath.Join(root, "docs", "patterns", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(paths)
	if len(paths) == 0 {
		t.Fatal("no pages in docs/patterns")
	}
	for _, path := range paths {
		name := "docs/patterns/" + filepath.Base(path)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		p, err := parsePage(string(b))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(path), ".md"), func(t *testing.T) {
			checkQuotes(t, root, name, p)
			if p.env == "none" {
				return
			}
			start, ok := envs[p.env]
			if !ok {
				t.Fatalf("%s: unknown docs-test environment %q", name, p.env)
			}
			env := start(t, p.example)
			dir := t.TempDir()
			if p.example != "" {
				copyDir(t, filepath.Join(root, p.example), dir)
			}
			checkPage(t, name, p, runPage(t, p, dir, env), shown(env))
		})
	}
}

// shownVars are the variables whose values outputs show by name: the
// registries' addresses differ on every run.
var shownVars = []string{"PROD_REGISTRY", "REGISTRY"}

func shown(env []string) map[string]string {
	vars := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		for _, name := range shownVars {
			if k == name {
				vars[k] = v
			}
		}
	}
	return vars
}

// checkQuotes holds each quoted block to the file it quotes.
func checkQuotes(t *testing.T, root, name string, p page) {
	for _, q := range p.quotes {
		b, err := os.ReadFile(filepath.Join(root, q.path))
		if err != nil {
			t.Errorf("%s:%d: quotes %s: %v", name, q.line, q.path, err)
			continue
		}
		if string(b) != q.text {
			t.Errorf("%s:%d: the block differs from %s; the file holds:\n%s", name, q.line, q.path, b)
		}
	}
}

// copyDir copies the example's files (one level: examples are flat but
// for a policies/ directory) into dir, where the page's commands run.
func copyDir(t *testing.T, from, to string) {
	err := filepath.WalkDir(from, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, path)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}
