package forward_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/forward"
	"github.com/stagegate/stagegate/internal/policy"
)

type idKey struct{}

func withID(ctx context.Context, id policy.Identity) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

// leaderPort is a leader's peer port whose forwarding handler answers
// with the identity it was given and the body it got.
func leaderPort(t *testing.T, server *tls.Config, members ...string) *forward.Mux {
	t.Helper()
	m, err := forward.Listen("127.0.0.1:0", server, members, "raft-test", forward.Proto)
	if err != nil {
		t.Fatal(err)
	}
	h := forward.Trusted(members, withID, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, _ := r.Context().Value(idKey{}).(policy.Identity)
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]any{"subject": id.Subject, "groups": id.Groups, "body": string(b),
			"path": r.URL.Path, "leakedHeader": r.Header.Get(forward.IdentityHeader)})
	}))
	srv := forward.NewServer(h, nil)
	go srv.Serve(m.Listener(forward.Proto))
	t.Cleanup(func() { srv.Close(); m.Close() })
	return m
}

// The caller's identity is what the follower authenticated: a forwarding
// header sent by the caller is dropped, on the leader's public API (Wrap
// on the leader serves locally without it) and by the follower.
func TestForwardCarriesTheAuthenticatedIdentity(t *testing.T) {
	ca := newPeerCA(t)
	members := []string{"sg-0", "sg-1"}
	s0, _ := ca.member(t, "sg-0")
	_, c1 := ca.member(t, "sg-1")
	port := leaderPort(t, s0, members...)
	auth := func(r *http.Request) (policy.Identity, error) {
		if r.Header.Get("Authorization") != "Bearer dev-token" {
			return policy.Identity{}, errors.New("invalid bearer token")
		}
		return policy.Identity{Subject: "dev", Groups: []string{"pipeline"}, Method: "token"}, nil
	}
	forged := `{"subject":"release-bot","groups":["release"]}`
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
		io.WriteString(w, "local:"+r.Header.Get(forward.IdentityHeader))
	})

	for name, tc := range map[string]struct {
		leader     bool
		token      string
		wantStatus int
		wantBody   string
	}{
		"follower forwards the authenticated caller": {token: "dev-token", wantStatus: http.StatusCreated, wantBody: `"subject":"dev"`},
		"leader serves locally, header dropped":      {leader: true, token: "dev-token", wantStatus: http.StatusTeapot, wantBody: "local:"},
		"unauthenticated stays local":                {token: "wrong", wantStatus: http.StatusTeapot, wantBody: "local:"},
	} {
		t.Run(name, func(t *testing.T) {
			f := forward.New(&fixedLeader{leader: tc.leader, id: "sg-0", addr: port.Addr().String()}, auth, c1)
			req := httptest.NewRequest("POST", "/v1/promotions?x=1", strings.NewReader(`{"image":"a"}`))
			req.Header.Set("Authorization", "Bearer "+tc.token)
			req.Header.Set(forward.IdentityHeader, forged)
			rec := httptest.NewRecorder()
			f.Wrap(local).ServeHTTP(rec, req)
			body := rec.Body.String()
			if rec.Code != tc.wantStatus || !strings.Contains(body, tc.wantBody) || strings.Contains(body, "release") {
				t.Fatalf("%d %s, want %d with %s and no forged identity", rec.Code, body, tc.wantStatus, tc.wantBody)
			}
			if tc.wantStatus == http.StatusCreated && (!strings.Contains(body, `"body":"{\"image\":\"a\"}"`) || !strings.Contains(body, `"leakedHeader":""`)) {
				t.Fatalf("the leader got %s", body)
			}
		})
	}
}

// Only members reach the peer port, and a follower forwards only to a
// certificate that names the leader it means.
func TestPeerPortAuthenticatesMembers(t *testing.T) {
	ca := newPeerCA(t)
	s0, _ := ca.member(t, "sg-0")
	_, mallory := ca.member(t, "mallory") // right CA, not a member
	_, c1 := ca.member(t, "sg-1")
	port := leaderPort(t, s0, "sg-0", "sg-1")
	auth := func(*http.Request) (policy.Identity, error) { return policy.Identity{Subject: "dev"}, nil }
	tick := make(chan time.Time)
	close(tick) // every wait ends at once; the clock below runs out
	for name, tc := range map[string]struct {
		client   *tls.Config
		leaderID string
	}{
		"a non-member's certificate":           {client: mallory, leaderID: "sg-0"},
		"the leader's certificate is not sg-2": {client: c1, leaderID: "sg-2"},
	} {
		t.Run(name, func(t *testing.T) {
			now := time.Unix(0, 0)
			f := forward.New(&fixedLeader{id: tc.leaderID, addr: port.Addr().String()}, auth, tc.client,
				forward.WithClock(func() time.Time { now = now.Add(time.Second); return now }, func(time.Duration) <-chan time.Time { return tick }))
			rec := httptest.NewRecorder()
			f.Wrap(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/promotions", strings.NewReader("{}")))
			if rec.Code != http.StatusServiceUnavailable {
				t.Fatalf("%d %s, want 503", rec.Code, rec.Body)
			}
		})
	}
	// A raw dial without a client certificate learns nothing.
	conn, err := tls.Dial("tcp", port.Addr().String(), &tls.Config{RootCAs: c1.RootCAs, NextProtos: []string{forward.Proto}})
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		_, err = conn.Read(make([]byte, 1))
		conn.Close()
	}
	if err == nil {
		t.Fatal("the peer port accepted a client without a certificate")
	}
}

// With no leader, a write is retried for retryFor, then answered 503
// with Retry-After; it becomes local once this node leads.
func TestForwardWaitsForAnElection(t *testing.T) {
	ca := newPeerCA(t)
	_, c1 := ca.member(t, "sg-1")
	auth := func(*http.Request) (policy.Identity, error) { return policy.Identity{Subject: "dev"}, nil }
	lead := &fixedLeader{}
	now := time.Unix(0, 0)
	waits := 0
	after := func(d time.Duration) <-chan time.Time {
		waits++
		now = now.Add(d)
		ch := make(chan time.Time, 1)
		ch <- now
		return ch
	}
	f := forward.New(lead, auth, c1, forward.WithRetryFor(10*time.Second), forward.WithClock(func() time.Time { return now }, after))
	rec := httptest.NewRecorder()
	f.Wrap(http.NotFoundHandler()).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/promotions", strings.NewReader("{}")))
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "1" || !strings.Contains(rec.Body.String(), "no cluster leader answered within 10s") {
		t.Fatalf("%d %q %s", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if waits != 100 {
		t.Fatalf("waited %d times, want 100 (10s in steps of 100ms)", waits)
	}

	// An election ends while it waits: this node won, and serves it.
	waits = 0
	after = func(time.Duration) <-chan time.Time {
		waits++
		if waits == 3 {
			lead.leader = true
		}
		ch := make(chan time.Time, 1)
		ch <- now
		return ch
	}
	f = forward.New(lead, auth, c1, forward.WithClock(func() time.Time { return now }, after))
	rec = httptest.NewRecorder()
	f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusCreated)
		w.Write(b)
	})).ServeHTTP(rec, httptest.NewRequest("POST", "/v1/promotions", strings.NewReader(`{"image":"a"}`)))
	if rec.Code != http.StatusCreated || rec.Body.String() != `{"image":"a"}` {
		t.Fatalf("%d %s, want the body served locally", rec.Code, rec.Body)
	}
}

// A member that forwards without the caller's identity is refused: the
// leader never acts on a write as nobody in particular.
func TestTrustedNeedsTheCallersIdentity(t *testing.T) {
	ca := newPeerCA(t)
	s0, _ := ca.member(t, "sg-0")
	_, c1 := ca.member(t, "sg-1")
	port := leaderPort(t, s0, "sg-0", "sg-1")
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		Certificates: c1.Certificates, RootCAs: c1.RootCAs, NextProtos: []string{forward.Proto}}}}
	for name, header := range map[string]string{
		"no identity":   "",
		"empty subject": `{"subject":""}`,
		"not JSON":      "release-manager",
	} {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", "https://"+port.Addr().String()+"/v1/promotions", strings.NewReader("{}"))
			if header != "" {
				req.Header.Set(forward.IdentityHeader, header)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "needs the caller's identity") {
				t.Fatalf("%d %s, want 400", resp.StatusCode, b)
			}
		})
	}
}
