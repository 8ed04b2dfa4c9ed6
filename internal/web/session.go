package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/policy"
)

// The cookies of the web view. The __Host- prefix makes the browser
// refuse them unless they are Secure, for path / and without a Domain, so
// that no sibling host or plain-HTTP page can set or shadow them.
const (
	sessionCookie = "__Host-stagegate-session"
	// signinCookie carries the sign-in form's CSRF secret before there is
	// a session (double submit), so that another site cannot sign a
	// victim's browser in as the attacker.
	signinCookie = "__Host-stagegate-signin"
)

// Defaults of the session store.
const (
	// DefaultSessionTTL is a session's whole lifetime, not an idle
	// timeout: a person signs in again after it, with their token.
	DefaultSessionTTL = time.Hour
	// DefaultMaxSessions bounds the store; a sign-in beyond it is
	// refused rather than evicting someone else's session.
	DefaultMaxSessions = 10000
	// maxSessionsPerSubject bounds one identity's sessions; its oldest
	// goes when it signs in once more, so that a script signing in in a
	// loop cannot fill the store.
	maxSessionsPerSubject = 16
)

var (
	errNoSession = errors.New("no session: sign in")
	errFull      = errors.New("too many sessions; try again later")
	errExpired   = errors.New("session expired: sign in again")
)

// session is what the server holds for a signed-in browser. Only the
// sha256 of the cookie's value is kept, so that the store's memory does
// not hold credentials.
type session struct {
	id      policy.Identity
	csrf    string
	expires time.Time
	// flash is a one-shot message for the next page (the result of an
	// action), since actions answer with a redirect.
	flash string
}

// sessions is the server-side session store, bounded, with an injected
// clock.
type sessions struct {
	mu    sync.Mutex
	now   func() time.Time
	ttl   time.Duration
	max   int
	byKey map[hashKey]*session
}

func newSessions(now func() time.Time, ttl time.Duration, max int) *sessions {
	return &sessions{now: now, ttl: ttl, max: max, byKey: map[hashKey]*session{}}
}

// randomToken is 32 random bytes, base64url: a cookie value or a CSRF
// token.
func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashKey is how the store names a session: the sha256 of its cookie's
// value. It is also what another replica sends the issuer to ask about a
// session (cluster.go), so that the cookie itself stays where it came.
type hashKey = [sha256.Size]byte

func hashOf(value string) hashKey { return sha256.Sum256([]byte(value)) }

// create starts a session for id and returns its cookie value, which
// starts with prefix (the issuing member's, in a cluster).
func (s *sessions) create(id policy.Identity, prefix string) (string, *session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	var mine []hashKey
	for k, v := range s.byKey {
		if v.id.Subject == id.Subject {
			mine = append(mine, k)
		}
	}
	if len(mine) >= maxSessionsPerSubject {
		oldest := mine[0]
		for _, k := range mine[1:] {
			if s.byKey[k].expires.Before(s.byKey[oldest].expires) {
				oldest = k
			}
		}
		delete(s.byKey, oldest)
	}
	if len(s.byKey) >= s.max {
		return "", nil, errFull
	}
	value := prefix + randomToken()
	ss := &session{id: id, csrf: randomToken(), expires: now.Add(s.ttl)}
	s.byKey[hashOf(value)] = ss
	return value, ss, nil
}

// get returns the live session of a key. A copy, so that the caller
// reads it without the lock.
func (s *sessions) get(k hashKey) (session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byKey[k]
	if !ok {
		return session{}, errNoSession
	}
	if !s.now().Before(ss.expires) {
		delete(s.byKey, k)
		return session{}, errExpired
	}
	return *ss, nil
}

// takeFlash returns and clears the session's one-shot message.
func (s *sessions) takeFlash(k hashKey) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ss, ok := s.byKey[k]
	if !ok {
		return ""
	}
	f := ss.flash
	ss.flash = ""
	return f
}

func (s *sessions) setFlash(k hashKey, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ss, ok := s.byKey[k]; ok {
		ss.flash = msg
	}
}

// delete ends a session (sign-out): its cookie no longer works anywhere.
func (s *sessions) delete(k hashKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byKey, k)
}

func (s *sessions) sweepLocked(now time.Time) {
	for k, v := range s.byKey {
		if !now.Before(v.expires) {
			delete(s.byKey, k)
		}
	}
}

func (s *sessions) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.byKey)
}

// sameToken compares CSRF tokens in constant time.
func sameToken(a, b string) bool {
	return a != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
