package web

import (
	"bytes"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// drawRow writes one board row, the markup of testdata/boardrow.html
// with html/template's escaping, byte for byte: TestDrawRowMatchesTemplate
// and FuzzDrawRow hold it to html/template's output for hostile values.
//
// It replaces executing that template because a row has some 46 actions
// and each is a reflective call plus escaper calls: drawing 1,000 rows
// took 131 ms, above the board's 100 ms goal whenever every row had to be
// drawn again (every pod count changed, or the first look after a start);
// writing them takes a tenth of that. The escaping is html/template's, not
// a second policy: text and quoted attributes get its HTML replacement
// table, the href values its URL normalisation first.
func drawRow(b *bytes.Buffer, rv *rowView) {
	b.WriteString(`<tr><th scope="row"><a href="/ui/image/`)
	writeURL(b, rv.Repo)
	b.WriteString(`">`)
	writeHTML(b, rv.Repo)
	b.WriteString(`</a></th>`)
	for i := range rv.Cells {
		c := &rv.Cells[i]
		b.WriteString(`<td data-stage="`)
		writeHTML(b, c.Stage)
		b.WriteString(`">`)
		for j := range c.Digests {
			d := &c.Digests[j]
			if d.Revoked {
				b.WriteString(`<div class="digest revoked"><span class="state">✖ revoked</span>`)
			} else {
				b.WriteString(`<div class="digest promoted"><span class="state">✔</span>`)
			}
			b.WriteString(` <a href="/ui/image/`)
			writeURL(b, d.Digest)
			b.WriteString(`"><code>`)
			writeHTML(b, d.Short)
			b.WriteString(`</code></a> <button type="button" class="copy" data-copy="`)
			writeHTML(b, d.Digest)
			b.WriteString(`" aria-label="Copy digest">copy</button><div class="meta"><time datetime="`)
			writeHTML(b, d.ISO)
			b.WriteString(`">`)
			writeHTML(b, d.When)
			b.WriteString(`</time> · `)
			writeHTML(b, d.Meta)
			b.WriteString(`</div></div>`)
		}
		if c.Older != 0 {
			b.WriteString(`<div class="meta">and `)
			b.WriteString(strconv.Itoa(c.Older))
			b.WriteString(` older</div>`)
		}
		if c.Pending != 0 {
			b.WriteString(`<div class="pending"><a href="/ui/requests">◷ `)
			b.WriteString(strconv.Itoa(c.Pending))
			b.WriteString(` pending approval</a></div>`)
		}
		if bg := c.BreakGlass; bg != nil {
			b.WriteString(`<div class="breakglass">⚠ break-glass: `)
			writeHTML(b, bg.Workload)
			b.WriteString(` by `)
			writeHTML(b, bg.Subject)
			b.WriteString(`, <time datetime="`)
			writeHTML(b, bg.ISO)
			b.WriteString(`">`)
			writeHTML(b, bg.When)
			b.WriteString(`</time></div>`)
		}
		b.WriteString(`</td>`)
	}
	b.WriteString(`</tr>`)
}

// writeHTML escapes s as html/template does in text and in quoted
// attribute values (its htmlReplacementTable): NUL, quotes, &, + and the
// angle brackets; every other byte, invalid UTF-8 included, as it is.
func writeHTML(b *bytes.Buffer, s string) {
	written := 0
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		var repl string
		switch r {
		case 0:
			repl = "\uFFFD"
		case '"':
			repl = "&#34;"
		case '&':
			repl = "&amp;"
		case '\'':
			repl = "&#39;"
		case '+':
			repl = "&#43;"
		case '<':
			repl = "&lt;"
		case '>':
			repl = "&gt;"
		}
		if repl != "" {
			b.WriteString(s[written:i])
			b.WriteString(repl)
			written = i + w
		}
		i += w
	}
	b.WriteString(s[written:])
}

// writeURL writes s as html/template does inside a URL attribute after a
// fixed path: its URL normalisation (bytes outside RFC 3986's unreserved
// and reserved sets percent-encoded, valid escapes kept), then writeHTML.
func writeURL(b *bytes.Buffer, s string) {
	var n bytes.Buffer
	written := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', bytes.IndexByte([]byte("-._~!#$&*+,/:;=?@[]"), c) >= 0:
			continue
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			continue
		}
		n.WriteString(s[written:i])
		fmt.Fprintf(&n, "%%%02x", c)
		written = i + 1
	}
	if written == 0 {
		writeHTML(b, s)
		return
	}
	n.WriteString(s[written:])
	writeHTML(b, n.String())
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
