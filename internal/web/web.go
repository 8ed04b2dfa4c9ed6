package web

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

//go:embed assets templates
var files embed.FS

// Ledger is what the pages read. The server reads the ledger only to
// send it on; the browser verifies what it shows.
type Ledger interface {
	HistoryPage(key string, start uint64, limit, maxBytes int) ([]ledger.Entry, bool, error)
	EntriesPage(start, limit uint64, maxBytes int) ([]ledger.Entry, error)
	State(digest, stage string) (ledger.State, bool, error)
	Size() (uint64, error)
	Checkpoint() (string, error)
	InclusionProof(index, size uint64) (ledger.InclusionProof, error)
	ConsistencyProof(from, to uint64) (ledger.ConsistencyProof, error)
}

// Authenticator establishes who signs in: a bearer token, or the
// request's verified client certificate (api.Authenticator).
type Authenticator interface {
	Authenticate(r *http.Request) (policy.Identity, error)
}

// Requests lists the pending requests of a stage (*promotion.Service).
type Requests interface {
	Requests(ctx context.Context, stage, state string, start uint64, limit int) ([]promotion.RequestView, *uint64, error)
}

// Running counts the pods that run digests now (continuous validation).
type Running interface {
	Running(digests []string, stage string, limit int) ([]inventory.RunningPod, int, error)
}

// Keys are the public keys the browser verifies with. The server sends
// them, so the page also remembers them (local storage) and raises an
// alarm when they change, as ssh does with host keys.
type Keys struct {
	// Log is the checkpoint verifier key, in the note format
	// (name+hash+base64).
	Log string `json:"log"`
	// Cosign is the PEM public key of this stagegate's attestations.
	Cosign string `json:"cosign"`
	// Trusted are the PEM keys of other stagegates whose entries this one
	// imports (registrySource).
	Trusted []string `json:"trusted"`
}

// Server is the web view.
type Server struct {
	ledger   Ledger
	auth     Authenticator
	api      http.Handler
	stages   []string
	keys     Keys
	requests Requests
	running  Running
	peers    Peers
	log      *slog.Logger
	now      func() time.Time
	ttl      time.Duration
	max      int

	sessions *sessions
	throttle *throttle
	board    *board
	pages    map[string]*template.Template
	assets   fs.FS
}

// Option configures the Server.
type Option func(*Server)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClock sets the clock sessions expire by.
func WithClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// WithSessionTTL sets a session's lifetime (DefaultSessionTTL).
func WithSessionTTL(d time.Duration) Option { return func(s *Server) { s.ttl = d } }

// WithMaxSessions bounds the session store (DefaultMaxSessions).
func WithMaxSessions(n int) Option { return func(s *Server) { s.max = n } }

// WithRequests marks pending approvals on the board and lists them.
func WithRequests(r Requests) Option { return func(s *Server) { s.requests = r } }

// WithRunning shows how many pods run each digest.
func WithRunning(r Running) Option { return func(s *Server) { s.running = r } }

// New returns the web view. api is the promotion API's handler: every
// action is a request to it, made with the session's identity
// (api.WithAuthenticated), so that the view can do nothing the API would
// not let that identity do.
func New(l Ledger, auth Authenticator, api http.Handler, stages []string, keys Keys, opts ...Option) (*Server, error) {
	s := &Server{ledger: l, auth: auth, api: api, stages: stages, keys: keys,
		log: slog.New(slog.DiscardHandler), now: time.Now, ttl: DefaultSessionTTL, max: DefaultMaxSessions}
	for _, o := range opts {
		o(s)
	}
	s.sessions = newSessions(s.now, s.ttl, s.max)
	s.throttle = newThrottle(s.now)
	var err error
	if s.pages, err = parseTemplates(); err != nil {
		return nil, err
	}
	s.board = newBoard(l)
	if s.assets, err = fs.Sub(files, "assets"); err != nil {
		return nil, err
	}
	return s, nil
}

// Register adds the web view's routes under /ui/ to mux.
func (s *Server) Register(mux *http.ServeMux) {
	h := func(pattern string, fn http.HandlerFunc) { mux.Handle(pattern, s.harden(fn)) }
	mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	h("GET /ui/static/", s.static)
	h("GET /ui/signin", s.signinPage)
	h("POST /ui/signin", s.signin)
	h("POST /ui/signout", s.page(s.signout))
	h("GET /ui/{$}", s.page(s.boardPage))
	h("GET /ui/image/{key...}", s.page(s.imagePage))
	h("GET /ui/ledger", s.page(s.ledgerPage))
	h("GET /ui/requests", s.page(s.requestsPage))
	h("POST /ui/revoke", s.page(s.revoke))
	h("POST /ui/requests/{id}/{verb}", s.page(s.answer))
	h("GET /ui/receipt/{index}", s.data(s.receipt))
	h("GET /ui/api/keys", s.data(s.keysData))
	h("GET /ui/api/entries", s.data(s.entriesData))
	h("GET /ui/api/consistency", s.data(s.consistencyData))
	h("/ui/", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
}

// csp allows this origin's scripts, styles and connections only: no
// inline script, no frames, forms that post only here.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// harden sets the security headers on every answer of the view, bounds
// request bodies, and refuses state-changing requests another site sent
// (Sec-Fetch-Site, Origin), before the CSRF token is even looked at.
func (s *Server) harden(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		// same-origin, not no-referrer: with no-referrer a browser sends
		// "Origin: null" on a form post, and sameOrigin could not tell.
		hd.Set("Referrer-Policy", "same-origin")
		hd.Set("Cross-Origin-Opener-Policy", "same-origin")
		hd.Set("Cross-Origin-Resource-Policy", "same-origin")
		if !strings.HasPrefix(r.URL.Path, "/ui/static/") {
			hd.Set("Cache-Control", "no-store")
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				http.Error(w, "cross-site request refused", http.StatusForbidden)
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
		}
		next(w, r)
	})
}

// maxForm bounds a form post: a reason and a few fields.
const maxForm = 16 << 10

// sameOrigin is false for a request the browser says another site made.
// Browsers send Sec-Fetch-Site on every request; a page of this origin
// posts with "same-origin". Without it (an old browser, or a client that
// is no browser) the Origin header, when there is one, must be this
// host. The CSRF token stands either way.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "same-origin":
		return true
	case "":
	default:
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, "/ui/static/")
	if name == "" || strings.Contains(name, "..") {
		http.NotFound(w, r)
		return
	}
	switch {
	case strings.HasSuffix(name, ".js"):
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case strings.HasSuffix(name, ".css"):
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case strings.HasSuffix(name, ".svg"):
		w.Header().Set("Content-Type", "image/svg+xml")
	}
	// Assets are part of the binary: a new binary may change them, so
	// they are revalidated, never cached for long.
	w.Header().Set("Cache-Control", "no-cache")
	http.ServeFileFS(w, r, s.assets, name)
}
