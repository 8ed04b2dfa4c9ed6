package web

import (
	"bytes"
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
// Between two looks few rows change, and drawing is still the largest
// part of a look. The fragment is escaped as html/template escapes the
// page around it (drawRow); it is keyed by the whole view, so a cached
// fragment can only be what drawing anew would give. It is used under
// board.mu.
type rowCache struct {
	rows map[string]cachedRow
	buf  bytes.Buffer
}

type cachedRow struct {
	view rowView
	html template.HTML
}

func newRowCache() *rowCache {
	return &rowCache{rows: map[string]cachedRow{}}
}

// draw sets rv.HTML, from the cache when the row's view is unchanged.
func (c *rowCache) draw(rv *rowView) {
	if old, ok := c.rows[rv.Repo]; ok && old.view.same(rv) {
		rv.HTML = old.html
		return
	}
	c.buf.Reset()
	drawRow(&c.buf, rv)
	// drawRow's output is escaped as html/template escapes (rowdraw.go):
	// marking it as HTML only spares escaping it twice.
	rv.HTML = template.HTML(c.buf.String())
	if len(c.rows) >= maxCachedRows {
		clear(c.rows)
	}
	c.rows[rv.Repo] = cachedRow{view: *rv, html: rv.HTML}
}

// same reports whether two views of a row draw the same HTML: every
// field drawRow reads is compared.
func (a *rowView) same(b *rowView) bool {
	return a.Repo == b.Repo && slices.EqualFunc(a.Cells, b.Cells, func(x, y cellView) bool {
		return x.Stage == y.Stage && x.Older == y.Older && x.Pending == y.Pending &&
			slices.Equal(x.Digests, y.Digests) &&
			(x.BreakGlass == nil) == (y.BreakGlass == nil) && (x.BreakGlass == nil || *x.BreakGlass == *y.BreakGlass)
	})
}
