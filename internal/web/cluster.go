package web

// Sessions across the replicas of a cluster. A session lives on the
// replica that signed the person in (its issuer), whose member ID the
// cookie names; any other replica asks the issuer about it over the peer
// port (mutual TLS between members), on every request, and sign-out ends
// it there. So a session works behind a Service whichever replica
// answers, ends everywhere at once, and is still held in one place only,
// bounded, as the sha256 of its cookie, expiring by the issuer's clock.
// When the issuer cannot be asked (down, restarted, cut off) the session
// is refused: the person signs in again, on the replica that answers.
// There is no cache, so that a sign-out holds at once on every replica;
// the price is one round trip on the peer port per page.
//
// Replicating sessions through Raft was the alternative: a session would
// survive its issuer, but every sign-in and sign-out would be a log
// write, the FSM (and its snapshots) would carry credentials' hashes
// next to the ledger, and a sign-in would need a leader.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/policy"
)

// PeerSessionPath is where a replica's peer port answers the others'
// questions about the sessions it issued (PeerHandler).
const PeerSessionPath = "/peer/v1/web/session"

// peerTimeout bounds a question to the issuer: a replica that does not
// answer in time is taken as down, and the session refused.
const peerTimeout = 2 * time.Second

// maxPeerAnswer bounds the issuer's answer read.
const maxPeerAnswer = 64 << 10

// Peers are the members of this replica's cluster, as sessions need them.
type Peers interface {
	// Self is this replica's member ID.
	Self() string
	// Members are the configured member IDs, this one among them.
	Members() []string
	// Call posts body to path on member id's peer port and returns the
	// answer's status and body. Only a configured member is called, and
	// its certificate must name it.
	Call(ctx context.Context, id, path string, body []byte) (int, []byte, error)
}

// WithPeers makes sessions work on every replica of a cluster: the
// cookie names the issuing member, which the others ask. Register
// PeerHandler on the peer port at PeerSessionPath.
func WithPeers(p Peers) Option { return func(s *Server) { s.peers = p } }

// cookiePrefix starts the session cookies this replica issues: its member
// ID, base64url so that any ID is a cookie's octets, and a dot (which
// base64url and randomToken never hold).
func (s *Server) cookiePrefix() string {
	if s.peers == nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(s.peers.Self())) + "."
}

var errNoIssuer = errors.New("the session names no member of this cluster: sign in again")

// issuer returns the member that issued the cookie value, "" when it is
// this replica (or there is no cluster). A cookie that names something
// that is not a configured member is refused here, so that a forged one
// cannot make this replica call an arbitrary host.
func (s *Server) issuer(value string) (string, error) {
	if s.peers == nil {
		return "", nil
	}
	enc, _, ok := strings.Cut(value, ".")
	if !ok {
		return "", errNoIssuer
	}
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", errNoIssuer
	}
	id := string(b)
	if id == s.peers.Self() {
		return "", nil
	}
	if !slices.Contains(s.peers.Members(), id) {
		return "", errNoIssuer
	}
	return id, nil
}

// The questions a replica asks an issuer.
const (
	opGet       = "get"
	opTakeFlash = "take-flash"
	opSetFlash  = "set-flash"
	opEnd       = "end"
)

type peerRequest struct {
	Op    string `json:"op"`
	Hash  []byte `json:"hash"`
	Flash string `json:"flash,omitempty"`
}

type peerAnswer struct {
	Identity *policy.Identity `json:"identity,omitempty"`
	CSRF     string           `json:"csrf,omitempty"`
	Flash    string           `json:"flash,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// ask puts a question about the session of value to its issuer.
func (s *Server) ask(ctx context.Context, issuer string, q peerRequest, value string) (peerAnswer, error) {
	h := hashOf(value)
	q.Hash = h[:]
	body, err := json.Marshal(q)
	if err != nil {
		return peerAnswer{}, fmt.Errorf("web: session: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, peerTimeout)
	defer cancel()
	status, b, err := s.peers.Call(ctx, issuer, PeerSessionPath, body)
	if err != nil {
		s.log.Warn("web: the replica that issued a session did not answer", "issuer", issuer, "err", err)
		return peerAnswer{}, fmt.Errorf("the replica that signed you in (%s) cannot be reached: sign in again", issuer)
	}
	var a peerAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		return peerAnswer{}, fmt.Errorf("web: session: %s answered %d, not JSON", issuer, status)
	}
	switch status {
	case http.StatusOK:
		return a, nil
	case http.StatusNotFound:
		if a.Error == errExpired.Error() {
			return a, errExpired
		}
		return a, errNoSession
	}
	return a, fmt.Errorf("web: session: %s answered %d: %s", issuer, status, a.Error)
}

// getSession returns the live session of a cookie value, from this
// replica's store or from its issuer's.
func (s *Server) getSession(ctx context.Context, value string) (session, error) {
	if value == "" {
		return session{}, errNoSession
	}
	issuer, err := s.issuer(value)
	if err != nil {
		return session{}, err
	}
	if issuer == "" {
		return s.sessions.get(hashOf(value))
	}
	a, err := s.ask(ctx, issuer, peerRequest{Op: opGet}, value)
	if err != nil {
		return session{}, err
	}
	if a.Identity == nil || a.Identity.Subject == "" || a.CSRF == "" {
		return session{}, fmt.Errorf("web: session: %s answered an incomplete session", issuer)
	}
	return session{id: *a.Identity, csrf: a.CSRF, flash: a.Flash}, nil
}

// takeFlash returns and clears the one-shot message of a session.
func (s *Server) takeFlash(ctx context.Context, value string) string {
	issuer, err := s.issuer(value)
	if err != nil {
		return ""
	}
	if issuer == "" {
		return s.sessions.takeFlash(hashOf(value))
	}
	a, _ := s.ask(ctx, issuer, peerRequest{Op: opTakeFlash}, value)
	return a.Flash
}

// setFlash leaves a one-shot message for the session's next page, which
// any replica may draw.
func (s *Server) setFlash(ctx context.Context, value, msg string) {
	issuer, err := s.issuer(value)
	if err != nil {
		return
	}
	if issuer == "" {
		s.sessions.setFlash(hashOf(value), msg)
		return
	}
	_, _ = s.ask(ctx, issuer, peerRequest{Op: opSetFlash, Flash: msg}, value)
}

// endSession ends a session where it lives.
func (s *Server) endSession(ctx context.Context, value string) error {
	issuer, err := s.issuer(value)
	if err != nil {
		return err
	}
	if issuer == "" {
		s.sessions.delete(hashOf(value))
		return nil
	}
	_, err = s.ask(ctx, issuer, peerRequest{Op: opEnd}, value)
	if errors.Is(err, errNoSession) || errors.Is(err, errExpired) {
		return nil
	}
	return err
}

// PeerHandler answers the other replicas' questions about the sessions
// this one issued. Serve it on the peer port only, where every caller is
// a member (mutual TLS): an answer carries the session's identity and
// CSRF token.
func (s *Server) PeerHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var q peerRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, maxForm))
		if err := dec.Decode(&q); err != nil || len(q.Hash) != len(hashKey{}) || len(q.Flash) > maxForm/2 {
			writeJSON(w, http.StatusBadRequest, peerAnswer{Error: "malformed session question"})
			return
		}
		k := hashKey(q.Hash)
		switch q.Op {
		case opGet:
			ss, err := s.sessions.get(k)
			if err != nil {
				writeJSON(w, http.StatusNotFound, peerAnswer{Error: err.Error()})
				return
			}
			writeJSON(w, http.StatusOK, peerAnswer{Identity: &ss.id, CSRF: ss.csrf, Flash: ss.flash})
		case opTakeFlash:
			writeJSON(w, http.StatusOK, peerAnswer{Flash: s.sessions.takeFlash(k)})
		case opSetFlash:
			s.sessions.setFlash(k, q.Flash)
			writeJSON(w, http.StatusOK, peerAnswer{})
		case opEnd:
			s.sessions.delete(k)
			s.log.Info("web sign-out on another replica")
			writeJSON(w, http.StatusOK, peerAnswer{})
		default:
			writeJSON(w, http.StatusBadRequest, peerAnswer{Error: "unknown question " + fmt.Sprintf("%q", q.Op)})
		}
	})
}
