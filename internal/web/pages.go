package web

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Board paging: a page of rows by default, at most maxPageRows.
const (
	defaultPageRows = 50
	maxPageRows     = 1000
	// maxPending bounds the pending requests read per stage to mark the
	// board; the requests page lists them all, paged.
	maxPending = 1000
)

var funcs = template.FuncMap{
	"short": shortDigest,
	"when":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
	"iso":   func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"path":  url.PathEscape,
}

// shortDigest is sha256: and the first 12 hex digits, as docker shows.
func shortDigest(d string) string {
	if h, ok := strings.CutPrefix(d, "sha256:"); ok && len(h) > 12 {
		return "sha256:" + h[:12]
	}
	return d
}

// parseTemplates parses the pages. The board's rows are drawn apart from
// their page and reused (rowCache, rowdraw.go).
func parseTemplates() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"signin", "board", "image", "ledger", "requests"} {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("web: templates: %w", err)
		}
		pages[name] = t
	}
	return pages, nil
}

// render writes a page; it renders into a buffer first so that a
// template error is a clean 500, not half a page.
func (s *Server) render(w http.ResponseWriter, status int, name string, data map[string]any) {
	var buf bytes.Buffer
	if err := s.pages[name].Execute(&buf, data); err != nil {
		s.log.Error("web: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	buf.WriteTo(w)
}

// pageData is what every signed-in page has: who, the CSRF token for its
// forms, the one-shot message of the last action.
func (s *Server) pageData(r *http.Request, title string) map[string]any {
	c := fromContext(r.Context())
	flash := ""
	if c.flash != "" {
		// The session came with its message: clearing it is a question
		// to the issuer only when there is one to clear.
		flash = s.takeFlash(r.Context(), c.cookie)
	}
	return map[string]any{"Title": title, "Subject": c.id.Subject, "Groups": c.id.Groups, "CSRF": c.csrf,
		"Flash": flash, "Stages": s.stages}
}

func (s *Server) imagePage(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	d := s.pageData(r, key)
	d["Key"] = key
	d["IsDigest"] = strings.HasPrefix(key, "sha256:")
	s.render(w, http.StatusOK, "image", d)
}

func (s *Server) ledgerPage(w http.ResponseWriter, r *http.Request) {
	d := s.pageData(r, "Ledger")
	start, _ := strconv.ParseUint(r.URL.Query().Get("start"), 10, 64)
	d["Start"] = start
	s.render(w, http.StatusOK, "ledger", d)
}

func (s *Server) requestsPage(w http.ResponseWriter, r *http.Request) {
	d := s.pageData(r, "Requests")
	type stageRequests struct {
		Stage    string
		Requests any
		Error    string
	}
	var all []stageRequests
	if s.requests != nil {
		for _, st := range s.stages {
			rs, _, err := s.requests.Requests(r.Context(), st, "pending", 0, maxPending)
			sr := stageRequests{Stage: st, Requests: rs}
			if err != nil {
				sr.Error = err.Error()
			}
			if len(rs) > 0 || err != nil {
				all = append(all, sr)
			}
		}
	}
	d["ByStage"] = all
	d["Enabled"] = s.requests != nil
	s.render(w, http.StatusOK, "requests", d)
}

// receipt downloads the receipt of one entry, as `stagegate receipt
// verify` reads it: the entry, its inclusion proof and the checkpoint
// the proof leads to.
func (s *Server) receipt(w http.ResponseWriter, r *http.Request) {
	idx, err := strconv.ParseUint(r.PathValue("index"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "index must be a ledger index"})
		return
	}
	cp, size, err := s.checkpoint()
	if err != nil {
		s.fail(w, err)
		return
	}
	if idx >= size {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": fmt.Sprintf("no entry %d: the ledger has %d", idx, size)})
		return
	}
	es, err := s.ledger.EntriesPage(idx, 1, 8<<20)
	if err != nil || len(es) != 1 {
		s.fail(w, fmt.Errorf("web: entry %d: %w", idx, err))
		return
	}
	p, err := s.ledger.InclusionProof(idx, size)
	if err != nil {
		s.fail(w, err)
		return
	}
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="receipt-%d.json"`, idx))
	writeJSON(w, http.StatusOK, ledger.Receipt{Entry: es[0], Inclusion: p, Checkpoint: cp})
}

func (s *Server) fail(w http.ResponseWriter, err error) {
	s.log.Error("web", "err", err)
	writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "internal error; see the server log"})
}
