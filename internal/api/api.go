// Package api serves the promotion HTTP API. It adapts HTTP to the
// promotion use case and the ledger; it makes no decisions of its own.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// MaxBody caps every request body of the API.
const MaxBody = 1 << 20

// Promoter is the promotion use case.
type Promoter interface {
	Promote(ctx context.Context, req promotion.Request) (promotion.Result, error)
	Revoke(ctx context.Context, req promotion.Revocation) (promotion.Result, error)
}

// Ledger is what the read endpoints need.
type Ledger interface {
	HistoryPage(key string, start uint64, limit, maxBytes int) ([]ledger.Entry, bool, error)
	State(digest, stage string) (ledger.State, bool, error)
	EntriesPage(start, limit uint64, maxBytes int) ([]ledger.Entry, error)
	Size() (uint64, error)
	Checkpoint() (string, error)
	InclusionProof(index, size uint64) (ledger.InclusionProof, error)
	ConsistencyProof(from, to uint64) (ledger.ConsistencyProof, error)
}

// API is the promotion HTTP API.
type API struct {
	promoter Promoter
	ledger   Ledger
	auth     *Authenticator
	stages   []string
	log      *slog.Logger
	reviewer Reviewer
	approver Approver

	// stageLister serves GET /v1/stages (WithStages).
	stageLister StageLister

	inventory Inventory

	limitMu sync.Mutex
	limits  map[string]*rate.Limiter
	rate    rate.Limit
	burst   int
}

// Option configures the API.
type Option func(*API)

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(a *API) { a.log = l } }

// WithRateLimit limits each identity's write requests.
func WithRateLimit(perSecond float64, burst int) Option {
	return func(a *API) { a.rate, a.burst = rate.Limit(perSecond), burst }
}

// New returns the API.
func New(p Promoter, l Ledger, auth *Authenticator, stages []string, opts ...Option) *API {
	a := &API{promoter: p, ledger: l, auth: auth, stages: stages, log: slog.New(slog.DiscardHandler),
		limits: map[string]*rate.Limiter{}, rate: 50, burst: 100}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/promotions", a.authed(true, a.promote))
	mux.HandleFunc("POST /v1/promotion-sets", a.authed(true, a.promoteSet))
	mux.HandleFunc("POST /v1/revocations", a.authed(true, a.revoke))
	mux.HandleFunc("GET /v1/images/{key...}", a.authed(false, a.image))
	mux.HandleFunc("GET /v1/ledger/entries", a.authed(false, a.entries))
	mux.HandleFunc("GET /v1/ledger/checkpoint", a.authed(false, a.checkpoint))
	mux.HandleFunc("GET /v1/ledger/proof/inclusion", a.authed(false, a.inclusion))
	mux.HandleFunc("GET /v1/ledger/proof/consistency", a.authed(false, a.consistency))
	// A review costs a policy evaluation and maybe registry calls, so it
	// is rate-limited like a write.
	mux.HandleFunc("POST /v1/reviews/{stage}", a.authed(true, a.review))
	a.registerRequests(mux)
	a.registerStages(mux)
	mux.HandleFunc("GET /v1/violations", a.authed(false, a.violations))
	// ServeMux answers a wrong method or an unknown path in plain text;
	// clients of this API expect its JSON error body everywhere.
	for path, allow := range map[string]string{
		"/v1/promotions": "POST", "/v1/promotion-sets": "POST", "/v1/revocations": "POST", "/v1/images/": "GET", "/v1/ledger/entries": "GET",
		"/v1/ledger/checkpoint": "GET", "/v1/ledger/proof/inclusion": "GET", "/v1/ledger/proof/consistency": "GET",
		"/v1/reviews/": "POST", "/v1/violations": "GET",
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.fail(w, refuse(http.StatusMethodNotAllowed, "method %s not allowed on %s; use %s", r.Method, path, allow))
		})
	}
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, refuse(http.StatusNotFound, "no such endpoint"))
	})
}

type identityKey struct{}

func (a *API) authed(write bool, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, ok := authenticated(r.Context())
		var err error
		if !ok {
			id, err = a.auth.Authenticate(r)
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="stagegate"`)
			a.fail(w, refuse(http.StatusUnauthorized, "%s", err))
			return
		}
		if write {
			if ok, wait := a.allow(id.Subject); !ok {
				w.Header().Set("Retry-After", retryAfter(wait))
				a.fail(w, refuse(http.StatusTooManyRequests, "too many requests from %s; retry in %s", id.Subject, retryAfter(wait)+"s"))
				return
			}
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		h(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	}
}

// allow takes a token from subject's bucket, or says how long until one
// is there, so that Retry-After tells a client the real wait.
func (a *API) allow(subject string) (bool, time.Duration) {
	a.limitMu.Lock()
	defer a.limitMu.Unlock()
	l, ok := a.limits[subject]
	if !ok {
		l = rate.NewLimiter(a.rate, a.burst)
		a.limits[subject] = l
	}
	r := l.Reserve()
	if !r.OK() {
		return false, time.Second
	}
	if d := r.Delay(); d > 0 {
		r.Cancel()
		return false, d
	}
	return true, 0
}

// retryAfter is d in whole seconds, rounded up, and at least 1: the header
// has no finer unit, and 0 would invite an immediate retry.
func retryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

type promoteBody struct {
	Image    string         `json:"image"`
	Stage    string         `json:"stage"`
	Reason   string         `json:"reason"`
	Evidence map[string]any `json:"evidence"`
	// OverrideRevocation puts back a digest revoked in the stage.
	OverrideRevocation bool `json:"overrideRevocation"`
	// FreezeOverride promotes while the stage is closed (an emergency).
	FreezeOverride bool `json:"freezeOverride"`
}

func (a *API) promote(w http.ResponseWriter, r *http.Request) {
	var body promoteBody
	if err := decode(r, &body); err != nil {
		a.fail(w, err)
		return
	}
	req := promotion.Request{
		Image: body.Image, Stage: body.Stage, Reason: body.Reason, Evidence: body.Evidence, Requester: identity(r),
		OverrideRevocation: body.OverrideRevocation, FreezeOverride: body.FreezeOverride,
	}
	if r.Header.Get("Accept") == ndjson {
		a.promoteStreaming(w, r, req)
		return
	}
	res, err := a.promoter.Promote(r.Context(), req)
	a.answer(w, res, err)
}

const ndjson = "application/x-ndjson"

// promoteStreaming answers with JSON lines: {"progress":…} while the image
// is copied to a target repository, then {"status":N,…} with what the plain
// answer would have carried. A copy can outlast the server's write timeout,
// so each line extends it.
func (a *API) promoteStreaming(w http.ResponseWriter, r *http.Request, req promotion.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", ndjson)
	w.WriteHeader(http.StatusOK)
	var mu sync.Mutex
	line := func(v any) {
		mu.Lock()
		defer mu.Unlock()
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		b, _ := json.Marshal(v)
		_, _ = w.Write(append(b, '\n'))
		_ = rc.Flush()
	}
	req.Progress = func(ev oci.ProgressEvent) { line(map[string]any{"progress": ev}) }
	res, err := a.promoter.Promote(r.Context(), req)
	status, body := a.respond(res, err)
	line(map[string]any{"status": status, "body": body})
}

const streamWriteTimeout = 30 * time.Second

type revokeBody struct {
	Digest     string `json:"digest"`
	Repository string `json:"repository"`
	Stage      string `json:"stage"`
	Reason     string `json:"reason"`
}

func (a *API) revoke(w http.ResponseWriter, r *http.Request) {
	var body revokeBody
	if err := decode(r, &body); err != nil {
		a.fail(w, err)
		return
	}
	res, err := a.promoter.Revoke(r.Context(), promotion.Revocation{
		Digest: body.Digest, Repository: body.Repository, Stage: body.Stage, Reason: body.Reason, Requester: identity(r),
	})
	a.answerRevocation(w, res, err)
}

// Page bounds of the read endpoints. An entry is at most a few tens of KB
// (reasons, justifications and evidence are capped), and a page also stops
// at maxPageBytes, so that no response holds more than a bounded amount
// whatever was written: one unpaginated history response once took 242 MB.
// The ledger stops reading at maxPageBytes of stored entries too: reading
// the whole limit and trimming after held 1000 entries of 16 KiB evidence
// per request, and 8 such readers took serve to 215 MB (bench memory).
const (
	defaultPageLimit = 100
	maxPageLimit     = 1000
	maxPageBytes     = 4 << 20
)

type imageView struct {
	Key     string                    `json:"key"`
	States  map[string][]ledger.State `json:"states"`
	History []ledger.Entry            `json:"history"`
	// Next is the start of the next page of history, absent on the last.
	Next *uint64 `json:"next,omitempty"`
	// Where the digests of the page run now (inventory.go).
	runningAnswer
}

// pageParams reads start and limit.
func pageParams(r *http.Request) (start uint64, limit int, err error) {
	if start, err = uintParam(r, "start", 0); err != nil {
		return 0, 0, err
	}
	l, err := uintParam(r, "limit", defaultPageLimit)
	if err != nil {
		return 0, 0, err
	}
	if l == 0 || l > maxPageLimit {
		return 0, 0, refuse(http.StatusBadRequest, "limit must be between 1 and %d", maxPageLimit)
	}
	return start, int(l), nil
}

// trimPage cuts page where it would pass maxPageBytes (keeping at least one
// entry) and returns the start of the next page, or nil when more is false
// and nothing was cut.
func trimPage(page []ledger.Entry, more bool) ([]ledger.Entry, *uint64) {
	size := 0
	for i, e := range page {
		size += entrySize(&e)
		if i > 0 && size > maxPageBytes {
			next := e.Index
			return page[:i], &next
		}
	}
	if more && len(page) > 0 {
		next := page[len(page)-1].Index + 1
		return page, &next
	}
	return page, nil
}

// entrySize estimates the JSON size of e from its variable parts.
func entrySize(e *ledger.Entry) int {
	n := 512 + len(e.Envelope)*4/3 + len(e.Reason) + len(e.Repository) + len(e.Workload)
	for _, s := range e.Images {
		n += len(s) + 3
	}
	for _, s := range e.Platforms {
		n += len(s) + 3
	}
	for k, v := range e.Labels {
		n += len(k) + len(v) + 6
	}
	return n
}

func (a *API) image(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	start, limit, err := pageParams(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	hist, more, err := a.ledger.HistoryPage(key, start, limit, maxPageBytes)
	if err != nil {
		a.fail(w, err)
		return
	}
	if len(hist) == 0 && start == 0 {
		a.fail(w, refuse(http.StatusNotFound, "%s has no ledger entries", key))
		return
	}
	view := imageView{Key: key, States: map[string][]ledger.State{}}
	view.History, view.Next = trimPage(hist, more)
	// The states of the digests this page names: each is one look-up per
	// stage, and a page names at most limit digests.
	seen := map[string]bool{}
	for _, e := range view.History {
		if e.Kind == ledger.KindBreakGlass || seen[e.Digest] {
			continue
		}
		seen[e.Digest] = true
		for _, st := range a.stages {
			s, ok, err := a.ledger.State(e.Digest, st)
			if err != nil {
				a.fail(w, err)
				return
			}
			if ok && (s.Promoted || s.Revoked) {
				view.States[st] = append(view.States[st], s)
			}
		}
	}
	view.runningAnswer = a.imageRunning(key, view.History)
	writeJSON(w, http.StatusOK, view)
}

func (a *API) entries(w http.ResponseWriter, r *http.Request) {
	start, limit, err := pageParams(r)
	if err != nil {
		a.fail(w, err)
		return
	}
	es, err := a.ledger.EntriesPage(start, uint64(limit), maxPageBytes)
	if err != nil {
		a.fail(w, err)
		return
	}
	size, err := a.ledger.Size()
	if err != nil {
		a.fail(w, err)
		return
	}
	page, next := trimPage(es, start+uint64(len(es)) < size)
	body := map[string]any{"start": start, "entries": page}
	if next != nil {
		body["next"] = *next
	}
	writeJSON(w, http.StatusOK, body)
}

func (a *API) checkpoint(w http.ResponseWriter, _ *http.Request) {
	cp, err := a.ledger.Checkpoint()
	if err != nil {
		a.fail(w, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, cp)
}

func (a *API) inclusion(w http.ResponseWriter, r *http.Request) {
	idx, err := uintParam(r, "index", ^uint64(0))
	if err != nil {
		a.fail(w, err)
		return
	}
	size, err := uintParam(r, "size", ^uint64(0))
	if err != nil {
		a.fail(w, err)
		return
	}
	if idx == ^uint64(0) || size == ^uint64(0) {
		a.fail(w, refuse(http.StatusBadRequest, "index and size are required"))
		return
	}
	p, err := a.ledger.InclusionProof(idx, size)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (a *API) consistency(w http.ResponseWriter, r *http.Request) {
	from, err := uintParam(r, "from", ^uint64(0))
	if err != nil {
		a.fail(w, err)
		return
	}
	to, err := uintParam(r, "to", ^uint64(0))
	if err != nil {
		a.fail(w, err)
		return
	}
	if from == ^uint64(0) || to == ^uint64(0) {
		a.fail(w, refuse(http.StatusBadRequest, "from and to are required"))
		return
	}
	p, err := a.ledger.ConsistencyProof(from, to)
	if err != nil {
		a.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func uintParam(r *http.Request, name string, def uint64) (uint64, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, refuse(http.StatusBadRequest, "%s must be a non-negative integer", name)
	}
	return v, nil
}

// decode reads one JSON object into v as decodeJSON does, refusing unknown
// fields, bodies over MaxBody and of another content type.
func decode(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	if err := decodeJSON(b, v, strictBody); err != nil {
		return refuse(http.StatusBadRequest, "malformed JSON: %v", err)
	}
	return nil
}

// readBody reads a JSON request body of at most MaxBody bytes.
func readBody(r *http.Request) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" {
			return nil, refuse(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		}
	}
	b, err := io.ReadAll(r.Body)
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, refuse(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", MaxBody)
		}
		return nil, refuse(http.StatusBadRequest, "reading request body: %v", err)
	}
	return b, nil
}

func identity(r *http.Request) policy.Identity {
	id, _ := r.Context().Value(identityKey{}).(policy.Identity)
	return id
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
