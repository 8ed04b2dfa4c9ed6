package web

import (
	"bytes"
	"fmt"
	"html/template"
	"slices"
)

// maxCachedRows bounds the drawn rows the board keeps: two full pages of
// the largest size. Past it the cache starts over rather than tracking
// use, so that its memory stays bounded (some 2 KB a row) whatever the
// number of repositories, at the cost of redrawing rows now and then.
const maxCachedRows = 2 * maxPageRows

// rowCache keeps each repository's drawn row with the view it was drawn
// from. A row is drawn again only when what it shows changed: the view is
// rebuilt on every look (states, pending requests, running pods are
// always read afresh), only the HTML is reused when the view is the same.
// Drawing is most of a board's cost (each template action is a reflective
// call, and html/template adds escaper calls to each), and between two
// looks few rows change. The fragment comes out of html/template like
// the page around it, so its escaping is the same; it is keyed by the
// whole view, so a cached fragment can only be what drawing anew would
// give. It is used under board.mu.
type rowCache struct {
	tmpl *template.Template
	rows map[string]cachedRow
	buf  bytes.Buffer
}

type cachedRow struct {
	view rowView
	html template.HTML
}

func newRowCache(tmpl *template.Template) *rowCache {
	return &rowCache{tmpl: tmpl, rows: map[string]cachedRow{}}
}

// draw sets rv.HTML, from the cache when the row's view is unchanged.
func (c *rowCache) draw(rv *rowView) error {
	if old, ok := c.rows[rv.Repo]; ok && old.view.same(rv) {
		rv.HTML = old.html
		return nil
	}
	c.buf.Reset()
	if err := c.tmpl.ExecuteTemplate(&c.buf, "row", rv); err != nil {
		return fmt.Errorf("web: board row %q: %w", rv.Repo, err)
	}
	// The template's output is escaped HTML (html/template): marking it
	// as such only spares escaping it twice.
	rv.HTML = template.HTML(c.buf.String())
	if len(c.rows) >= maxCachedRows {
		clear(c.rows)
	}
	c.rows[rv.Repo] = cachedRow{view: *rv, html: rv.HTML}
	return nil
}

// same reports whether two views of a row draw the same HTML: every
// field the row template reads is compared.
func (a *rowView) same(b *rowView) bool {
	return a.Repo == b.Repo && slices.EqualFunc(a.Cells, b.Cells, func(x, y cellView) bool {
		return x.Stage == y.Stage && x.Older == y.Older && x.Pending == y.Pending &&
			slices.Equal(x.Digests, y.Digests) &&
			(x.BreakGlass == nil) == (y.BreakGlass == nil) && (x.BreakGlass == nil || *x.BreakGlass == *y.BreakGlass)
	})
}
