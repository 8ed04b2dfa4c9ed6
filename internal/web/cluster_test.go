package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/forward"
)

// peerCA signs member certificates as `stagegate certs generate --peers`
// makes them: CN and a URI SAN name the member, for server and client.
type peerCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newPeerCA(t testing.TB) *peerCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "peer CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &peerCA{cert: cert, key: key, pool: pool}
}

func (ca *peerCA) member(t testing.TB, id string) (server, client *tls.Config) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		URIs:        []*url.URL{{Scheme: "urn", Opaque: "stagegate:peer:" + id}}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	return &tls.Config{Certificates: []tls.Certificate{c}, ClientCAs: ca.pool},
		&tls.Config{Certificates: []tls.Certificate{c}, RootCAs: ca.pool}
}

type noLeader struct{}

func (noLeader) IsLeader() bool           { return false }
func (noLeader) Leader() (string, string) { return "", "" }

// testPeers is Peers over the real peer channel (forward.Forwarder.Call,
// mutual TLS 1.3), as internal/app wires it; it notes whom it was asked
// to call.
type testPeers struct {
	self  string
	addrs map[string]string
	fwd   *forward.Forwarder

	mu     sync.Mutex
	called []string
}

func (p *testPeers) Self() string { return p.self }
func (p *testPeers) Members() []string {
	var ids []string
	for id := range p.addrs {
		ids = append(ids, id)
	}
	return ids
}

func (p *testPeers) Call(ctx context.Context, id, path string, body []byte) (int, []byte, error) {
	p.mu.Lock()
	p.called = append(p.called, id)
	p.mu.Unlock()
	addr, ok := p.addrs[id]
	if !ok {
		return 0, nil, errors.New("no such member")
	}
	resp, err := p.fwd.Call(ctx, p.self, id, addr, http.MethodPost, path, body)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPeerAnswer))
	return resp.StatusCode, b, err
}

func (p *testPeers) calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.called...)
}

type replicaUnderTest struct {
	s     *Server
	h     http.Handler
	peers *testPeers
	stop  func()
}

// twoReplicas are two web views, each with its own session store and a
// real peer port (forward.Listen, Trusted, NewServer) serving
// PeerHandler.
func twoReplicas(t testing.TB, c *clock) []*replicaUnderTest {
	t.Helper()
	ca := newPeerCA(t)
	ids := []string{"sg-0", "sg-1"}
	addrs := map[string]string{}
	var muxes []*forward.Mux
	var clients []*tls.Config
	for _, id := range ids {
		server, client := ca.member(t, id)
		m, err := forward.Listen("127.0.0.1:0", server, ids, forward.Proto)
		if err != nil {
			t.Fatal(err)
		}
		addrs[id] = m.Addr().String()
		muxes = append(muxes, m)
		clients = append(clients, client)
	}
	var out []*replicaUnderTest
	for i, id := range ids {
		p := &testPeers{self: id, addrs: addrs, fwd: forward.New(noLeader{}, nil, clients[i])}
		s := newTestServer(t, c, nil, WithPeers(p))
		peer := http.NewServeMux()
		peer.Handle("POST "+PeerSessionPath, s.PeerHandler())
		srv := forward.NewServer(forward.Trusted(ids, api.WithAuthenticated, peer), nil)
		done := make(chan struct{})
		go func() { defer close(done); _ = srv.Serve(muxes[i].Listener(forward.Proto)) }()
		var once sync.Once
		stop := func() { once.Do(func() { srv.Close(); muxes[i].Close(); <-done }) }
		t.Cleanup(stop)
		mux := http.NewServeMux()
		s.Register(mux)
		out = append(out, &replicaUnderTest{s: s, h: mux, peers: p, stop: stop})
	}
	return out
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// get answers GET path on h with the cookie.
func get(t testing.TB, h http.Handler, path string, cookie *http.Cookie) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://sg"+path, nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func signedIn(rec *httptest.ResponseRecorder) bool {
	return rec.Code == http.StatusOK && strings.Contains(rec.Body.String(), `<strong id="subject">ci</strong>`)
}

// TestSessionAcrossReplicas: a session signed in on one replica opens
// pages on the other, which asks the issuer over the peer port; its CSRF
// token is the issuer's; signing out on the other replica ends it on
// both; a cookie that names no member makes no replica call anyone, and
// a session whose issuer is down is refused (fail closed).
func TestSessionAcrossReplicas(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	rs := twoReplicas(t, c)
	a, b := rs[0], rs[1]

	cookie := signIn(t, a.h)
	if !strings.HasPrefix(cookie.Value, base64.RawURLEncoding.EncodeToString([]byte("sg-0"))+".") {
		t.Fatalf("the cookie %q does not name its issuer sg-0", cookie.Value)
	}
	for name, r := range map[string]*replicaUnderTest{"issuer": a, "other": b} {
		if rec := get(t, r.h, "/ui/ledger", cookie); !signedIn(rec) {
			t.Fatalf("%s replica: %d, not signed in:\n%s", name, rec.Code, rec.Body)
		}
	}
	if got := b.peers.calls(); len(got) == 0 || got[0] != "sg-0" {
		t.Fatalf("the other replica asked %v, want sg-0", got)
	}
	if got := a.peers.calls(); len(got) != 0 {
		t.Fatalf("the issuer asked %v about its own session", got)
	}

	// An action's message, left by the replica that did it, shows once
	// on the next page, whichever replica draws it.
	b.s.setFlash(t.Context(), cookie.Value, "revoked on sg-1")
	if body := get(t, a.h, "/ui/ledger", cookie).Body.String(); !strings.Contains(body, "revoked on sg-1") {
		t.Error("the issuer does not show the message the other replica left")
	}
	b.s.setFlash(t.Context(), cookie.Value, "second message")
	if body := get(t, b.h, "/ui/ledger", cookie).Body.String(); !strings.Contains(body, "second message") {
		t.Error("the other replica does not show the session's message")
	}
	if body := get(t, a.h, "/ui/ledger", cookie).Body.String(); strings.Contains(body, "second message") {
		t.Error("a message showed twice")
	}

	// A form posted to the other replica needs the session's token
	// (the issuer's), and sign-out there ends the session everywhere.
	page := get(t, b.h, "/ui/ledger", cookie)
	m := csrfField.FindStringSubmatch(page.Body.String())
	if m == nil {
		t.Fatal("no CSRF token on the page")
	}
	post := func(h http.Handler, csrf string) int {
		req := httptest.NewRequest(http.MethodPost, "https://sg/ui/signout", strings.NewReader(url.Values{"csrf": {csrf}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	if code := post(b.h, "wrong"); code != http.StatusForbidden {
		t.Fatalf("sign-out with a wrong CSRF token: %d, want 403", code)
	}
	if rec := get(t, a.h, "/ui/ledger", cookie); !signedIn(rec) {
		t.Fatal("a refused sign-out ended the session")
	}
	if code := post(b.h, m[1]); code != http.StatusSeeOther {
		t.Fatalf("sign-out on the other replica: %d", code)
	}
	for name, r := range map[string]*replicaUnderTest{"issuer": a, "other": b} {
		if rec := get(t, r.h, "/ui/ledger", cookie); rec.Code != http.StatusSeeOther || !strings.HasPrefix(rec.Header().Get("Location"), "/ui/signin") {
			t.Errorf("%s replica after sign-out: %d %s, want a redirect to sign-in", name, rec.Code, rec.Header().Get("Location"))
		}
	}

	// Forged cookies: one naming a host that is no member, one naming
	// a member that never issued it.
	before := len(b.peers.calls())
	for name, value := range map[string]string{
		"a host":         base64.RawURLEncoding.EncodeToString([]byte("attacker.example:443")) + "." + randomToken(),
		"no member name": "garbage",
		"bad base64":     "!!.x",
	} {
		rec := get(t, b.h, "/ui/ledger", &http.Cookie{Name: sessionCookie, Value: value})
		if rec.Code != http.StatusSeeOther {
			t.Errorf("forged cookie naming %s: %d, want a redirect to sign-in", name, rec.Code)
		}
	}
	if got := b.peers.calls()[before:]; len(got) != 0 {
		t.Errorf("forged cookies made the replica call %v", got)
	}
	forged := &http.Cookie{Name: sessionCookie, Value: base64.RawURLEncoding.EncodeToString([]byte("sg-0")) + "." + randomToken()}
	if rec := get(t, b.h, "/ui/ledger", forged); rec.Code != http.StatusSeeOther {
		t.Errorf("a cookie sg-0 never issued: %d, want a redirect to sign-in", rec.Code)
	}

	// The issuer's clock ends the session, wherever it is used.
	cookie = signIn(t, a.h)
	c.t = c.t.Add(DefaultSessionTTL)
	if rec := get(t, b.h, "/ui/ledger", cookie); rec.Code != http.StatusSeeOther {
		t.Errorf("an expired session on the other replica: %d, want a redirect to sign-in", rec.Code)
	}

	// Fail closed: with the issuer's peer port down, its sessions are
	// refused elsewhere, and a sign-in there works.
	cookie = signIn(t, a.h)
	if rec := get(t, b.h, "/ui/ledger", cookie); !signedIn(rec) {
		t.Fatal("a fresh session is refused on the other replica")
	}
	a.stop()
	if rec := get(t, b.h, "/ui/ledger", cookie); rec.Code != http.StatusSeeOther {
		t.Errorf("the issuer is down: %d, want a redirect to sign-in", rec.Code)
	}
	if rec := get(t, b.h, "/ui/ledger", signIn(t, b.h)); !signedIn(rec) {
		t.Errorf("signing in again on the replica that answers: %d", rec.Code)
	}
}

// TestPeerHandlerRefusesMalformed: a question that is not one (no hash,
// a hash of the wrong length, an unknown op, not JSON) is a 400 and ends
// no session.
func TestPeerHandlerRefusesMalformed(t *testing.T) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	s := newTestServer(t, c, nil)
	mux := http.NewServeMux()
	s.Register(mux)
	cookie := signIn(t, mux)
	h := hashOf(cookie.Value)
	good := base64.StdEncoding.EncodeToString(h[:])
	for name, body := range map[string]string{
		"not JSON":     `end`,
		"no hash":      `{"op":"end"}`,
		"short hash":   `{"op":"end","hash":"` + base64.StdEncoding.EncodeToString(h[:31]) + `"}`,
		"unknown op":   `{"op":"drop-all","hash":"` + good + `"}`,
		"a long flash": `{"op":"set-flash","hash":"` + good + `","flash":"` + strings.Repeat("x", maxForm) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			s.PeerHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, PeerSessionPath, strings.NewReader(body)))
			if rec.Code != http.StatusBadRequest {
				t.Errorf("%d %s, want 400", rec.Code, rec.Body)
			}
			if !signedIn(get(t, mux, "/ui/ledger", cookie)) {
				t.Error("the session ended")
			}
		})
	}
}

// BenchmarkPageOnOtherReplica is a page drawn by a replica that asks the
// issuer about the session over the peer port, against one the issuer
// draws itself: the round trip a session costs behind a Service.
func BenchmarkPageOnOtherReplica(b *testing.B) {
	c := &clock{t: time.Unix(1_800_000_000, 0)}
	rs := twoReplicas(b, c)
	cookie := signIn(b, rs[0].h)
	for name, r := range map[string]*replicaUnderTest{"issuer": rs[0], "other": rs[1]} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if rec := get(b, r.h, "/ui/ledger", cookie); !signedIn(rec) {
					b.Fatalf("%d", rec.Code)
				}
			}
		})
	}
}
