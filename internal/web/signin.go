package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

type sessionKey struct{}

// current is the request's session and its cookie value.
type current struct {
	session
	cookie string
}

func fromContext(ctx context.Context) current {
	c, _ := ctx.Value(sessionKey{}).(current)
	return c
}

// lookup returns the request's live session.
func (s *Server) lookup(r *http.Request) (current, error) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return current{}, errNoSession
	}
	ss, err := s.getSession(r.Context(), c.Value)
	if err != nil {
		return current{}, err
	}
	return current{session: ss, cookie: c.Value}, nil
}

// page wraps a handler of a page or a form: without a session it
// redirects to sign-in (and back afterwards); a POST must carry the
// session's CSRF token.
func (s *Server) page(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.lookup(r)
		if err != nil {
			if r.Method != http.MethodGet {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			http.Redirect(w, r, "/ui/signin?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			if !sameToken(r.PostFormValue("csrf"), c.csrf) {
				http.Error(w, "missing or wrong CSRF token: reload the page and try again", http.StatusForbidden)
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, c)))
	}
}

// data wraps a handler of the page scripts' JSON: without a session it
// answers 401 in JSON, since a script cannot follow a redirect to a form.
func (s *Server) data(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.lookup(r)
		if err != nil {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": err.Error()})
			return
		}
		next(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, c)))
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// safeNext is where to go after sign-in: a path of this view only, so
// that the sign-in form is no open redirect.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/ui/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/ui/"
	}
	return next
}

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	if _, err := s.lookup(r); err == nil {
		http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	s.renderSignin(w, r, http.StatusOK, "")
}

func (s *Server) renderSignin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	secret := randomToken()
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: secret, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: 600})
	s.render(w, status, "signin", map[string]any{
		"Title": "Sign in", "CSRF": secret, "Next": safeNext(r.FormValue("next")), "Error": msg,
		"Certificate": r.TLS != nil && len(r.TLS.VerifiedChains) > 0,
	})
}

// signin starts a session for the bearer token in the form, or for the
// connection's client certificate when the form has none: the same
// Authenticator as the API's, so a person is who their token says.
func (s *Server) signin(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(signinCookie)
	if err != nil || !sameToken(r.PostFormValue("csrf"), c.Value) {
		s.renderSignin(w, r, http.StatusForbidden, "The sign-in form expired or came from another site; try again.")
		return
	}
	if d := s.throttle.wait(r.RemoteAddr); d > 0 {
		w.Header().Set("Retry-After", retryAfterSeconds(d))
		s.renderSignin(w, r, http.StatusTooManyRequests,
			"Too many failed sign-ins from your address; try again in "+retryAfterSeconds(d)+" s.")
		return
	}
	probe := r.Clone(r.Context())
	probe.Header = http.Header{}
	if tok := strings.TrimSpace(r.PostFormValue("token")); tok != "" {
		probe.Header.Set("Authorization", "Bearer "+tok)
	}
	id, err := s.auth.Authenticate(probe)
	if err != nil {
		s.throttle.failed(r.RemoteAddr)
		s.log.Info("web sign-in refused", "remote", r.RemoteAddr, "err", err)
		s.renderSignin(w, r, http.StatusUnauthorized, "Sign-in refused: "+err.Error()+".")
		return
	}
	value, _, err := s.sessions.create(id, s.cookiePrefix())
	if err != nil {
		s.renderSignin(w, r, http.StatusServiceUnavailable, err.Error())
		return
	}
	s.log.Info("web sign-in", "subject", id.Subject, "method", id.Method)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: value, Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: int(s.ttl.Seconds())})
	http.Redirect(w, r, safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// signout ends the session on the server (on the replica that issued
// it, in a cluster), so that a copied cookie stops working too, and
// clears it in the browser.
func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	c := fromContext(r.Context())
	if err := s.endSession(r.Context(), c.cookie); err != nil {
		// The issuer answered a moment ago (page checked the session
		// with it); the cookie goes from the browser all the same.
		s.log.Warn("web sign-out: the session could not be ended where it lives", "subject", c.id.Subject, "err", err)
	} else {
		s.log.Info("web sign-out", "subject", c.id.Subject)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", Secure: true, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	http.Redirect(w, r, "/ui/signin", http.StatusSeeOther)
}
