package docs

import (
	"strings"
	"testing"
)

func TestParsePage(t *testing.T) {
	text := strings.Join([]string{
		"# A page",
		"<!-- docs-test: cluster examples/x -->",
		"<!-- file: examples/x/stagegate.yaml -->",
		"```yaml",
		"stages: []",
		"```",
		"```console",
		"$ stagegate promote x \\",
		"    --stage dev",
		"promoted",
		"$ kubectl apply -f - <<EOF   # exit 1",
		"kind: Pod",
		"EOF",
		"Error from server (Forbidden): …",
		"```",
	}, "\n")
	p, err := parsePage(text)
	if err != nil {
		t.Fatal(err)
	}
	if p.env != "cluster" || p.example != "examples/x" {
		t.Errorf("env = %q, example %q", p.env, p.example)
	}
	if len(p.quotes) != 1 || p.quotes[0].path != "examples/x/stagegate.yaml" || p.quotes[0].text != "stages: []\n" {
		t.Errorf("quotes = %+v", p.quotes)
	}
	if len(p.sessions) != 1 || len(p.sessions[0].commands) != 2 {
		t.Fatalf("sessions = %+v", p.sessions)
	}
	c0, c1 := p.sessions[0].commands[0], p.sessions[0].commands[1]
	if c0.text != "stagegate promote x \\\n    --stage dev" || c0.wantExit != 0 || len(c0.want) != 1 {
		t.Errorf("first command = %+v", c0)
	}
	if c1.text != "kubectl apply -f - <<EOF\nkind: Pod\nEOF" || c1.wantExit != 1 || c1.want[0] != "Error from server (Forbidden): …" {
		t.Errorf("second command = %+v", c1)
	}
}

func TestParsePageRefuses(t *testing.T) {
	tests := map[string]string{
		"no marker":          "# x\n",
		"commands with none": "<!-- docs-test: none -->\n```console\n$ true\n```\n",
		"output first":       "<!-- docs-test: cluster -->\n```console\nhello\n```\n",
		"open fence":         "<!-- docs-test: cluster -->\n```console\n$ true\n",
		"output only …":      "<!-- docs-test: cluster -->\n```console\n$ true\n…\n```\n",
	}
	for name, text := range tests {
		t.Run(name, func(t *testing.T) {
			if _, err := parsePage(text); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestMatch(t *testing.T) {
	tests := map[string]struct {
		want, got string
		ok        bool
	}{
		"equal":                  {"a b\nc", "a b\nc", true},
		"padding collapsed":      {"NAME STAGE", "NAME    STAGE  ", true},
		"digest shown as …":      {"image@sha256:…", "image@sha256:" + strings.Repeat("ab", 32), true},
		"inline ellipsis":        {"promoted … to dev", "promoted app:1.0 to dev", true},
		"inline ellipsis misses": {"promoted … to dev", "promoted app:1.0 to test", false},
		"line ellipsis: none":    {"a\n…\nb", "a\nb", true},
		"line ellipsis: many":    {"a\n…\nb", "a\nx\ny\nb", true},
		"extra line":             {"a", "a\nb", false},
		"missing line":           {"a\nb", "a", false},
		"other text":             {"allowed", "denied", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := match(normalize(strings.Split(tc.want, "\n")), normalize(strings.Split(tc.got, "\n"))); got != tc.ok {
				t.Fatalf("match = %v, want %v", got, tc.ok)
			}
		})
	}
}
