package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
)

// syncBuf is a bytes.Buffer safe for a command's goroutine and the test.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestPromoteWait: in a stage that needs one approval from security, the
// pipeline's `promote --wait` blocks with the request pending; `stagegate
// requests` lists it; the pipeline cannot approve its own; security's
// `stagegate approve` completes it, and the pipeline gets the receipt of
// a promotion that lists the approval. The server is app.Build's handler,
// over TLS, with a real ledger, policy and registry.
func TestPromoteWait(t *testing.T) {
	srv := startTLSServer(t, []api.Token{
		{SHA256: api.HashToken("ci-token"), Subject: "ci", Groups: []string{"pipeline"}},
		{SHA256: api.HashToken("sec-token"), Subject: "sec", Groups: []string{"security"}},
	}, func(cfg *config.Config) {
		cfg.Stages[0].Approvals = &config.Approvals{Required: 1, Groups: []string{"security"}}
	})
	a, sample, ca := srv.app, srv.sample, srv.caFile
	as := srv.as

	type result struct {
		out, err string
		e        error
	}
	done := make(chan result, 1)
	var waitErr syncBuf
	go func() {
		var out syncBuf
		cmd := NewRootCommand(Streams{In: strings.NewReader(""), Out: &out, Err: &waitErr,
			LookupEnv: func(k string) (string, bool) { return "ci-token", k == config.TokenEnv }})
		cmd.SetArgs([]string{"promote", sample.Image, "--stage", "dev", "--reason", "build 7", "--wait", "--wait-interval", "20ms",
			"--progress", "none", "--server", srv.url, "--ca-file", ca})
		e := cmd.ExecuteContext(context.Background())
		done <- result{out.String(), waitErr.String(), e}
	}()

	// Wait (bounded) for the request to be recorded.
	var id uint64
	deadline := time.Now().Add(30 * time.Second)
	for {
		list, _, err := a.Service.Requests(context.Background(), "dev", promotion.RequestPending, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(list) == 1 {
			id = list[0].ID
			break
		}
		select {
		case r := <-done:
			t.Fatalf("promote --wait returned before any approval: %v\n%s", r.e, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pending request after 30s; promote says:\n%s", waitErr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	sid := strconv.FormatUint(id, 10)

	out, _, err := as("sec-token", "requests", "--stage", "dev", "--state", "pending", "-o", "json")
	if err != nil || !strings.Contains(out, `"id": `+sid) {
		t.Fatalf("requests: %v\n%s", err, out)
	}
	if _, _, err := as("ci-token", "approve", sid, "--reason", "mine"); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Fatalf("the requester approving: %v, want a 403", err)
	}
	if _, stderr, err := as("sec-token", "approve", sid, "--reason", "scanned", "-o", "json"); err != nil || !strings.Contains(stderr, "approved: promoted") {
		t.Fatalf("approve: %v\n%s", err, stderr)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("promote --wait still blocked 60s after the approval:\n%s", waitErr.String())
	}
	if r.e != nil {
		t.Fatalf("promote --wait: %v\n%s", r.e, r.err)
	}
	var rc ledger.Receipt
	if err := json.Unmarshal([]byte(r.out), &rc); err != nil {
		t.Fatalf("promote --wait printed %q: %v", r.out, err)
	}
	if rc.Entry.Kind != ledger.KindPromotion || rc.Entry.Request == nil || *rc.Entry.Request != id ||
		len(rc.Entry.Approvals) != 1 || rc.Entry.Approvals[0].Subject != "sec" {
		t.Errorf("receipt entry = %+v, want the promotion completing request %d with sec's approval", rc.Entry, id)
	}
	for _, want := range []string{"is pending: 0 of 1 approvals", "approved by sec (security): scanned"} {
		if !strings.Contains(r.err, want) {
			t.Errorf("promote --wait said %q, want %q", r.err, want)
		}
	}
}
