package web

import (
	"context"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// The states a board cell can be filtered by.
var boardStates = []string{"promoted", "revoked", "pending", "break-glass"}

type boardView struct {
	Stages  []string // the columns shown
	Rows    []rowView
	Repo    string
	Stage   string
	State   string
	States  []string
	AllStgs []string
	Page    int
	Prev    string
	Next    string
	Shown   int
}

type rowView struct {
	Repo  string
	Cells []cellView
	// HTML is the row as drawRow draws it (rowCache).
	HTML template.HTML
}

type cellView struct {
	Stage      string
	Digests    []digestView
	Older      int
	Pending    int
	BreakGlass *breakGlassView
}

// breakGlassView is the newest break-glass admission of a cell.
type breakGlassView struct {
	Index    uint64
	Workload string
	Subject  string
	ISO      string
	When     string
}

// digestView is one digest in a cell, its text made here rather than by
// template functions: the board of 1,000 rows draws 4,000 of them, and
// each template call is a reflective call (a third of the render).
type digestView struct {
	Digest  string
	Short   string
	Revoked bool
	ISO     string
	When    string
	// Meta is who, and where it runs, and why when revoked.
	Meta string
}

func (c cellView) has(state string) bool {
	switch state {
	case "pending":
		return c.Pending > 0
	case "break-glass":
		return c.BreakGlass != nil
	}
	for _, d := range c.Digests {
		if (state == "revoked") == d.Revoked {
			return true
		}
	}
	return false
}

func (s *Server) boardPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	v, err := s.boardView(r.Context(), q)
	if err != nil {
		s.log.Error("web: board", "err", err)
		http.Error(w, "the board could not be read; see the server log", http.StatusInternalServerError)
		return
	}
	d := s.pageData(r, "Board")
	d["Board"] = v
	s.render(w, http.StatusOK, "board", d)
}

// boardView draws one page of the board. Rows are read in order and
// their cells' states looked up until the page is full, so that a page
// costs the rows it scans, not the whole ledger.
func (s *Server) boardView(ctx context.Context, q url.Values) (boardView, error) {
	v := boardView{Repo: q.Get("repo"), Stage: q.Get("stage"), State: q.Get("state"), States: boardStates, AllStgs: s.stages, Page: 1}
	if !slices.Contains(s.stages, v.Stage) {
		v.Stage = ""
	}
	if !slices.Contains(boardStates, v.State) {
		v.State = ""
	}
	v.Stages = s.stages
	if v.Stage != "" {
		v.Stages = []string{v.Stage}
	}
	if p, err := strconv.Atoi(q.Get("page")); err == nil && p > 1 {
		v.Page = p
	}
	limit := defaultPageRows
	if l, err := strconv.Atoi(q.Get("limit")); err == nil && l > 0 {
		limit = min(l, maxPageRows)
	}
	pending := s.pendingByCell(ctx)

	b := s.board
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.catchUp(); err != nil {
		return v, err
	}
	skip := (v.Page - 1) * limit
	rows := b.rows(v.Repo)
	if v.Stage == "" && v.State == "" {
		// Without a filter on cells every row matches: a far page skips
		// rows without looking up their states, so that its cost is its
		// own rows, not all those before it.
		rows = rows[min(skip, len(rows)):]
		skip = 0
	}
	for _, rw := range rows {
		rv := rowView{Repo: rw.name}
		match := v.Stage == "" && v.State == ""
		for _, st := range v.Stages {
			cv, err := s.cellView(rw, st, pending)
			if err != nil {
				return v, err
			}
			if len(cv.Digests) > 0 || cv.Pending > 0 || cv.BreakGlass != nil {
				match = match || v.State == "" || cv.has(v.State)
			}
			rv.Cells = append(rv.Cells, cv)
		}
		if !match {
			continue
		}
		if skip > 0 {
			skip--
			continue
		}
		if len(v.Rows) == limit {
			v.Next = pageLink(q, v.Page+1)
			break
		}
		v.Rows = append(v.Rows, rv)
	}
	for i := range v.Rows {
		b.drawn.draw(&v.Rows[i])
	}
	if v.Page > 1 {
		v.Prev = pageLink(q, v.Page-1)
	}
	v.Shown = len(v.Rows)
	return v, nil
}

func pageLink(q url.Values, page int) string {
	n := url.Values{}
	for k, vs := range q {
		n[k] = vs
	}
	n.Set("page", strconv.Itoa(page))
	return "/ui/?" + n.Encode()
}

func (s *Server) cellView(rw *row, stage string, pending map[[2]string]int) (cellView, error) {
	cv := cellView{Stage: stage, Pending: pending[[2]string{rw.name, stage}]}
	c, ok := rw.cells[stage]
	if !ok {
		return cv, nil
	}
	cv.Older = c.older
	if bg := c.breakGlass; bg != nil {
		cv.BreakGlass = &breakGlassView{Index: bg.Index, Workload: bg.Workload, Subject: bg.Subject,
			ISO: bg.Time.UTC().Format(time.RFC3339), When: bg.Time.UTC().Format("2006-01-02 15:04 UTC")}
	}
	for _, d := range c.digests {
		st, ok, err := s.ledger.State(d, stage)
		if err != nil {
			return cv, err
		}
		if !ok || (!st.Promoted && !st.Revoked) {
			continue
		}
		at, by, meta := st.PromotedAt, st.PromotedBy, ""
		if st.Revoked {
			at, by = st.RevokedAt, st.RevokedBy
		}
		meta = by
		if s.running != nil {
			if _, n, err := s.running.Running([]string{d}, stage, 1); err == nil {
				meta += " · " + strconv.Itoa(n) + " pod" + map[bool]string{true: "", false: "s"}[n == 1]
			}
		}
		if st.Revoked && st.RevokeReason != "" {
			meta += " · “" + st.RevokeReason + "”"
		}
		dv := digestView{Digest: d, Short: shortDigest(d), Revoked: st.Revoked,
			ISO: at.UTC().Format(time.RFC3339), When: at.UTC().Format("2006-01-02 15:04 UTC"), Meta: meta}
		cv.Digests = append(cv.Digests, dv)
	}
	return cv, nil
}

// pendingByCell counts the pending requests per repository and stage.
func (s *Server) pendingByCell(ctx context.Context) map[[2]string]int {
	out := map[[2]string]int{}
	if s.requests == nil {
		return out
	}
	for _, st := range s.stages {
		rs, _, err := s.requests.Requests(ctx, st, "pending", 0, maxPending)
		if err != nil {
			s.log.Warn("web: pending requests", "stage", st, "err", err)
			continue
		}
		for _, rq := range rs {
			out[[2]string{rq.Repository, st}]++
		}
	}
	return out
}
