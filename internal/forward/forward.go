package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/stagegate/stagegate/internal/policy"
)

// IdentityHeader carries the original caller's identity, as the follower
// authenticated it, on a forwarded request. Only the peer handler reads
// it, and only from a member's certificate: on the public API it is
// ignored (and a follower overwrites it before forwarding).
const IdentityHeader = "Stagegate-Forwarded-Identity"

// NotLeaderHeader marks a 503 that a replica answered because it is not
// (or no longer) the leader; a forwarding follower retries on it.
const NotLeaderHeader = "Stagegate-Not-Leader"

// Leadership is what forwarding needs of the Raft node.
type Leadership interface {
	IsLeader() bool
	// Leader is the leader's member ID and peer address, empty if none
	// is known.
	Leader() (id, address string)
}

// Authenticate establishes who sent a request on the public API.
type Authenticate func(*http.Request) (policy.Identity, error)

// Forwarder sends the writes a follower receives to the leader.
type Forwarder struct {
	lead     Leadership
	auth     Authenticate
	client   *http.Client
	retryFor time.Duration
	now      func() time.Time
	after    func(time.Duration) <-chan time.Time
	log      *slog.Logger
	maxBody  int64
}

// Option configures a Forwarder.
type Option func(*Forwarder)

// WithClock replaces the clock of the election retries.
func WithClock(now func() time.Time, after func(time.Duration) <-chan time.Time) Option {
	return func(f *Forwarder) { f.now, f.after = now, after }
}

// WithRetryFor bounds how long a write waits for a leader (default 10s).
func WithRetryFor(d time.Duration) Option { return func(f *Forwarder) { f.retryFor = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(f *Forwarder) { f.log = l } }

// WithMaxBody bounds a forwarded body (default 1 MiB, the API's).
func WithMaxBody(n int64) Option { return func(f *Forwarder) { f.maxBody = n } }

// retryEvery is the pause between two tries while there is no leader.
const retryEvery = 100 * time.Millisecond

// New returns a Forwarder that dials leaders with client (this node's
// certificate and the members' CA; cloned, TLS 1.3, offering Proto). The
// leader's certificate must name the leader's member ID.
func New(lead Leadership, auth Authenticate, client *tls.Config, opts ...Option) *Forwarder {
	f := &Forwarder{lead: lead, auth: auth, retryFor: 10 * time.Second, now: time.Now, after: time.After,
		log: slog.New(slog.DiscardHandler), maxBody: 1 << 20}
	for _, o := range opts {
		o(f)
	}
	tr := &http.Transport{
		DialTLSContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			// The leader this request was meant for is in the context:
			// its certificate must name it, so that a member cannot be
			// impersonated by another address.
			want, _ := ctx.Value(leaderKey{}).(string)
			cfg := client.Clone()
			cfg.MinVersion = tls.VersionTLS13
			cfg.NextProtos = []string{Proto}
			cfg.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.PeerCertificates) == 0 || !CertNames(cs.PeerCertificates[0], want) {
					return fmt.Errorf("forward: the certificate at %s does not name the leader %q", addr, want)
				}
				return nil
			}
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second}, Config: cfg}
			return d.DialContext(ctx, "tcp", addr)
		},
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
	}
	f.client = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return f
}

type leaderKey struct{}

// Wrap serves next on the leader and forwards to the leader elsewhere.
// A request that does not authenticate is left to next, which refuses it
// in the API's words.
func (f *Forwarder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(IdentityHeader) // never the caller's to say
		if f.lead.IsLeader() {
			next.ServeHTTP(w, r)
			return
		}
		id, err := f.auth(r)
		if err != nil {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, f.maxBody))
		if err != nil {
			// Let the API say it: give it what was read and the error.
			r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{err}))
			next.ServeHTTP(w, r)
			return
		}
		f.forward(w, r, body, id, next)
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// forward tries the leader until one answers, this node becomes the
// leader, or retryFor passes: then 503 with Retry-After.
func (f *Forwarder) forward(w http.ResponseWriter, r *http.Request, body []byte, id policy.Identity, next http.Handler) {
	idJSON, err := json.Marshal(id)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	deadline := f.now().Add(f.retryFor)
	var last error
	for {
		if f.lead.IsLeader() {
			r.Body = io.NopCloser(bytes.NewReader(body))
			next.ServeHTTP(w, r)
			return
		}
		if lid, addr := f.lead.Leader(); addr != "" && lid != "" {
			resp, err := f.send(r, body, idJSON, lid, addr)
			if err == nil && !(resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(NotLeaderHeader) != "") {
				copyResponse(w, resp)
				return
			}
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("%s is no longer the leader", lid)
			}
			last = err
			f.log.Debug("forwarding a write failed; retrying", "leader", lid, "err", err)
		}
		if !f.now().Before(deadline) || r.Context().Err() != nil {
			break
		}
		select {
		case <-f.after(retryEvery):
		case <-r.Context().Done():
		}
	}
	msg := fmt.Sprintf("no cluster leader answered within %s; nothing was recorded by this request, retry it", f.retryFor)
	if last != nil {
		f.log.Warn("forwarding a write gave up", "err", last)
	}
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

func (f *Forwarder) send(r *http.Request, body []byte, idJSON []byte, leaderID, addr string) (*http.Response, error) {
	ctx := context.WithValue(r.Context(), leaderKey{}, leaderID)
	u := "https://" + addr + r.URL.RequestURI()
	req, err := http.NewRequestWithContext(ctx, r.Method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, h := range []string{"Content-Type", "Accept"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	req.Header.Set(IdentityHeader, string(idJSON))
	// Connections are pooled by address; each member has its own, and
	// the dial verified that its certificate names the member.
	return f.client.Do(req)
}

// copyResponse relays the leader's answer, flushing as it goes so that a
// streamed promotion (x-ndjson) streams through.
func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for _, h := range []string{"Content-Type", "Retry-After", "X-Content-Type-Options", "WWW-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			w.Header().Set(h, v)
		}
	}
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			_ = rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// Trusted passes a request that arrived on the peer port from a member
// to next with the identity the follower sent, through with (which
// stores it where the API looks for an authenticated caller). A request
// without a member's certificate or without the identity is refused.
func Trusted(members []string, with func(context.Context, policy.Identity) context.Context, next http.Handler) http.Handler {
	ids := append([]string(nil), members...)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs, _ := r.Context().Value(connStateKey{}).(tls.ConnectionState)
		if len(cs.PeerCertificates) == 0 || MemberOf(cs.PeerCertificates[0], ids) == "" {
			http.Error(w, "forward: only members may forward", http.StatusForbidden)
			return
		}
		var id policy.Identity
		if err := json.Unmarshal([]byte(r.Header.Get(IdentityHeader)), &id); err != nil || id.Subject == "" {
			http.Error(w, "forward: a forwarded request needs the caller's identity", http.StatusBadRequest)
			return
		}
		r.Header.Del(IdentityHeader)
		next.ServeHTTP(w, r.WithContext(with(r.Context(), id)))
	})
}

// NewServer is the HTTP server of the peer port's forwarding listener.
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      90 * time.Second, // a promotion's copy streams
		IdleTimeout:       90 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		// The peer port's connections are TLS that net/http does not see
		// as such (peerConn): their state goes into each request's
		// context, for Trusted.
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if t, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
				return context.WithValue(ctx, connStateKey{}, t.ConnectionState())
			}
			return ctx
		},
	}
}

type connStateKey struct{}
