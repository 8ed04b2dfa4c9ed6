package docs

import (
	"bufio"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// A page is one Markdown file of docs/patterns, read for what the test
// runs: the environment it names, the console sessions and the files it
// quotes.
type page struct {
	// env names the environment the page's commands run in (see envs);
	// "none" for a page without commands.
	env string
	// example is the directory under examples/ the commands run in, whose
	// stagegate.yaml (if any) configures serve; "" for none.
	example  string
	sessions []session
	quotes   []quote
}

// A session is one ```console block: commands run in order, in one shell
// that lives for the whole page, so variables carry from block to block
// as they would in a reader's terminal.
type session struct {
	line     int // of the opening fence, for messages
	commands []command
}

// A command is what follows "$ " (with its continuation lines), and the
// output the page shows for it.
type command struct {
	line     int
	text     string
	wantExit int
	want     []string
}

// A quote is a fenced block the page says is a file of the repository
// (<!-- file: examples/x/stagegate.yaml --> on the line before the
// fence): the test holds the page to the file, so they cannot drift.
type quote struct {
	line int
	path string
	text string
}

var (
	envMarker   = regexp.MustCompile(`^<!-- docs-test: ([a-z-]+)(?: (examples/[a-z0-9-]+))? -->$`)
	fileMarker  = regexp.MustCompile(`^<!-- file: (\S+) -->$`)
	exitComment = regexp.MustCompile(`\s+# exit (\d+)$`)
)

// parsePage reads a page. Errors name the line.
func parsePage(text string) (page, error) {
	var p page
	var (
		fence     string // the open fence's info string; "" outside one
		fenceLine int
		body      []string
		quotePath string
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		if fence == "" {
			switch {
			case envMarker.MatchString(l):
				if p.env != "" {
					return p, fmt.Errorf("line %d: a second docs-test marker", n)
				}
				m := envMarker.FindStringSubmatch(l)
				p.env, p.example = m[1], m[2]
			case fileMarker.MatchString(l):
				quotePath = fileMarker.FindStringSubmatch(l)[1]
			case strings.HasPrefix(l, "```"):
				fence, fenceLine, body = strings.TrimPrefix(l, "```"), n, nil
				if fence == "" {
					fence = "text"
				}
			case strings.TrimSpace(l) != "":
				quotePath = "" // a marker applies to the very next fence only
			}
			continue
		}
		if l != "```" {
			body = append(body, l)
			continue
		}
		if quotePath != "" {
			p.quotes = append(p.quotes, quote{line: fenceLine, path: quotePath, text: strings.Join(body, "\n") + "\n"})
			quotePath = ""
		}
		if fence == "console" {
			s, err := parseSession(fenceLine, body)
			if err != nil {
				return p, err
			}
			p.sessions = append(p.sessions, s)
		}
		fence = ""
	}
	if fence != "" {
		return p, fmt.Errorf("line %d: fence never closed", fenceLine)
	}
	if p.env == "" {
		return p, fmt.Errorf("no <!-- docs-test: ENV --> marker (use \"none\" for a page without commands)")
	}
	if p.env == "none" && len(p.sessions) > 0 {
		return p, fmt.Errorf("docs-test: none, but the page has console blocks")
	}
	return p, sc.Err()
}

func parseSession(fenceLine int, body []string) (session, error) {
	s := session{line: fenceLine}
	for i := 0; i < len(body); i++ {
		l := body[i]
		if !strings.HasPrefix(l, "$ ") {
			if len(s.commands) == 0 {
				return s, fmt.Errorf("line %d: console block must start with \"$ command\"", fenceLine+1+i)
			}
			c := &s.commands[len(s.commands)-1]
			c.want = append(c.want, l)
			continue
		}
		c := command{line: fenceLine + 1 + i, text: strings.TrimPrefix(l, "$ ")}
		// A trailing backslash continues the command; so does a here-document
		// until its terminator.
		for strings.HasSuffix(c.text, `\`) && i+1 < len(body) {
			i++
			c.text += "\n" + body[i]
		}
		if term, ok := heredoc(c.text); ok {
			for i+1 < len(body) {
				i++
				c.text += "\n" + body[i]
				if body[i] == term {
					break
				}
			}
		}
		first, rest, _ := strings.Cut(c.text, "\n")
		if m := exitComment.FindStringSubmatch(first); m != nil {
			c.wantExit, _ = strconv.Atoi(m[1])
			first = strings.TrimSuffix(first, m[0])
			c.text = strings.TrimSuffix(first+"\n"+rest, "\n")
		}
		s.commands = append(s.commands, c)
	}
	for _, c := range s.commands {
		// A page that shows nothing of an output asserts nothing about it.
		if len(c.want) == 1 && strings.TrimSpace(c.want[0]) == ellipsis {
			return s, fmt.Errorf("line %d: the output is only %q: show what the reader should see", c.line, ellipsis)
		}
	}
	return s, nil
}

var heredocStart = regexp.MustCompile(`<<-?'?"?([A-Z]+)'?"?`)

// heredoc reports the terminator of a here-document the command opens.
func heredoc(cmd string) (string, bool) {
	m := heredocStart.FindStringSubmatch(cmd)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Ellipsis in a page's output stands for text that differs from run to
// run: within a line it matches any text; a line holding only it matches
// any number of lines.
const ellipsis = "…"

var (
	digestRE = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	spaces   = regexp.MustCompile(`[ \t]+`)
)

// normalize makes output comparable: digests are shown as sha256:… in
// the pages (they differ on every run), tables are compared with their
// column padding collapsed, and blank lines at either end are dropped.
func normalize(lines []string) []string {
	var out []string
	for _, l := range lines {
		l = digestRE.ReplaceAllString(l, "sha256:"+ellipsis)
		l = strings.TrimSpace(spaces.ReplaceAllString(l, " "))
		out = append(out, l)
	}
	for len(out) > 0 && out[0] == "" {
		out = out[1:]
	}
	for len(out) > 0 && out[len(out)-1] == "" {
		out = out[:len(out)-1]
	}
	return out
}

// match reports whether got (normalized output) is what want (a page's
// output, normalized the same way) shows.
func match(want, got []string) bool {
	if len(want) == 0 {
		return len(got) == 0
	}
	if want[0] == ellipsis {
		for i := 0; i <= len(got); i++ {
			if match(want[1:], got[i:]) {
				return true
			}
		}
		return false
	}
	return len(got) > 0 && matchLine(want[0], got[0]) && match(want[1:], got[1:])
}

// matchLine matches one line, … standing for any text.
func matchLine(want, got string) bool {
	parts := strings.Split(want, ellipsis)
	if len(parts) == 1 {
		return want == got
	}
	if !strings.HasPrefix(got, parts[0]) {
		return false
	}
	got = got[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(got, p)
		if i < 0 {
			return false
		}
		got = got[i+len(p):]
	}
	return strings.HasSuffix(got, parts[len(parts)-1])
}
