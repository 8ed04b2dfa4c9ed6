package web

import (
	"bytes"
	"html/template"
	"strings"
	"testing"
)

// rowTemplate is the reference drawRow is held to: the row as an
// html/template, whose contextual escaping is the specification.
func rowTemplate(t testing.TB) *template.Template {
	t.Helper()
	tmpl, err := template.ParseFiles("testdata/boardrow.html")
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func fromTemplate(t testing.TB, tmpl *template.Template, rv *rowView) string {
	t.Helper()
	var b bytes.Buffer
	if err := tmpl.ExecuteTemplate(&b, "row", rv); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func hostileRow(s string) rowView {
	return rowView{Repo: "reg.example/" + s, Cells: []cellView{
		{Stage: "dev" + s, Digests: []digestView{
			{Digest: "sha256:" + s, Short: s, ISO: s, When: s, Meta: "by " + s},
			{Digest: "sha256:abc", Short: "sha256:abc", Revoked: true, ISO: "2026-01-01T00:00:00Z", When: "2026-01-01 00:00 UTC", Meta: "revoked: " + s},
		}, Older: 2, Pending: 1, BreakGlass: &breakGlassView{Workload: "ns/Pod/" + s, Subject: s, ISO: s, When: s}},
		{Stage: "prod"},
	}}
}

// TestDrawRowMatchesTemplate: drawRow writes what html/template writes for
// the same row, byte for byte, whatever markup, quotes, URL syntax or
// invalid UTF-8 the values carry; so its escaping is html/template's.
func TestDrawRowMatchesTemplate(t *testing.T) {
	tmpl := rowTemplate(t)
	for name, s := range map[string]string{
		"plain":           "team/app",
		"markup":          `<script>alert(1)</script>`,
		"attribute break": `" onmouseover="alert(1)`,
		"single quotes":   `' autofocus onfocus='x`,
		"url syntax":      "a b/c?d=e&f#g%zz%41+~!$*,;=@[]",
		"javascript":      "javascript:alert(1)",
		"controls":        "a\x00b\x01c\td\ne\x7f",
		"invalid utf-8":   "a\xff\xfeb\xc3",
		"unicode":         "café ✔ \u2028 \ufdd0 \uffff",
		"entities":        "&amp; &#34; &lt;",
		"empty":           "",
	} {
		t.Run(name, func(t *testing.T) {
			rv := hostileRow(s)
			var got bytes.Buffer
			drawRow(&got, &rv)
			if want := fromTemplate(t, tmpl, &rv); got.String() != want {
				t.Fatalf("drawRow differs from html/template:\n got %q\nwant %q", got.String(), want)
			}
			if strings.Contains(got.String(), "<script") {
				t.Fatal("markup came through unescaped")
			}
		})
	}
	empty := rowView{Repo: "r"}
	var got bytes.Buffer
	drawRow(&got, &empty)
	if want := fromTemplate(t, tmpl, &empty); got.String() != want {
		t.Fatalf("a row without cells: got %q, want %q", got.String(), want)
	}
}

// FuzzDrawRow holds drawRow to html/template for any value.
func FuzzDrawRow(f *testing.F) {
	for _, s := range []string{"team/app", `"><img src=x>`, "a%2x%41 b", "\x00\xff'+"} {
		f.Add(s, s, 3)
	}
	tmpl := rowTemplate(f)
	f.Fuzz(func(t *testing.T, a, b string, n int) {
		rv := hostileRow(a)
		rv.Cells[0].Digests[0].Meta, rv.Cells[0].Older, rv.Cells[1].Pending = b, n, -n
		var got bytes.Buffer
		drawRow(&got, &rv)
		if want := fromTemplate(t, tmpl, &rv); got.String() != want {
			t.Fatalf("drawRow differs from html/template:\n got %q\nwant %q", got.String(), want)
		}
	})
}
