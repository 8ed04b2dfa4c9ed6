package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"

	"github.com/stagegate/stagegate/internal/api"
)

// call makes one request to the promotion API as the session's identity
// and returns its status and error message (empty on success). The API
// authorises, rate-limits and records it exactly as it does the CLI's.
func (s *Server) call(r *http.Request, path string, body any) (int, string) {
	b, err := json.Marshal(body)
	if err != nil {
		return http.StatusInternalServerError, err.Error()
	}
	c := fromContext(r.Context())
	req := httptest.NewRequestWithContext(api.WithAuthenticated(r.Context(), c.id), http.MethodPost, path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.RemoteAddr, req.TLS = r.RemoteAddr, r.TLS
	rec := httptest.NewRecorder()
	s.api.ServeHTTP(rec, req)
	if rec.Code < 300 {
		return rec.Code, ""
	}
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(rec.Body.Bytes(), &e) != nil || e.Error == "" {
		e.Error = strings.TrimSpace(rec.Body.String())
	}
	return rec.Code, e.Error
}

// back redirects to the page the form was on (a /ui/ path only), with
// the action's result as the next page's message.
func (s *Server) back(w http.ResponseWriter, r *http.Request, to, msg string) {
	s.setFlash(r.Context(), fromContext(r.Context()).cookie, msg)
	http.Redirect(w, r, safeNext(to), http.StatusSeeOther)
}

func (s *Server) revoke(w http.ResponseWriter, r *http.Request) {
	digest, stage, reason := r.PostFormValue("digest"), r.PostFormValue("stage"), strings.TrimSpace(r.PostFormValue("reason"))
	to := "/ui/image/" + digest
	if reason == "" {
		s.back(w, r, to, "Not revoked: a reason is required.")
		return
	}
	code, msg := s.call(r, "/v1/revocations", map[string]string{"digest": digest, "stage": stage, "reason": reason})
	if msg != "" {
		s.back(w, r, to, fmt.Sprintf("Not revoked (%d): %s", code, msg))
		return
	}
	s.back(w, r, to, fmt.Sprintf("Revoked %s in %s.", shortDigest(digest), stage))
}

// answer approves or rejects a request.
func (s *Server) answer(w http.ResponseWriter, r *http.Request) {
	verb := r.PathValue("verb")
	path := map[string]string{"approve": "approvals", "reject": "rejections"}[verb]
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if path == "" || err != nil {
		http.NotFound(w, r)
		return
	}
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	code, msg := s.call(r, "/v1/requests/"+url.PathEscape(strconv.FormatUint(id, 10))+"/"+path, map[string]string{"reason": reason})
	if msg != "" {
		s.back(w, r, "/ui/requests", fmt.Sprintf("Request %d not answered (%d): %s", id, code, msg))
		return
	}
	s.back(w, r, "/ui/requests", fmt.Sprintf("Request %d %s.", id, map[string]string{"approve": "approved", "reject": "rejected"}[verb]))
}
