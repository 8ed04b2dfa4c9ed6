package reliability

import (
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// slowRequest is a request whose body is held half sent, so that it is in
// flight, from headers to handler, for as long as the test wants.
type slowRequest struct {
	rest []byte
	pw   *io.PipeWriter
	done chan result
}

// startSlow sends the headers and the first half of body, and returns once
// they are written.
func (e *env) startSlow(path, token string, body []byte) *slowRequest {
	e.t.Helper()
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, "https://"+e.addr+path, pr)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	s := &slowRequest{rest: body[len(body)/2:], pw: pw, done: make(chan result, 1)}
	go func() {
		var r result
		resp, err := e.client.Do(req)
		if err != nil {
			r.err = err
		} else {
			r.code = resp.StatusCode
			r.body, r.err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		pr.CloseWithError(errors.New("response read"))
		s.done <- r
	}()
	// The pipe hands the half over only when the transport reads it, i.e.
	// after the connection is up and the headers are sent.
	if _, err := pw.Write(body[:len(body)/2]); err != nil {
		e.t.Fatalf("start %s: %v", path, err)
	}
	return s
}

// finish sends the rest of the body and waits for the answer.
func (s *slowRequest) finish() result {
	if _, err := s.pw.Write(s.rest); err != nil {
		s.pw.Close()
		return <-s.done
	}
	s.pw.Close()
	return <-s.done
}

// TestGracefulShutdown sends SIGTERM while promotions and admission reviews
// are in flight: each of them must finish with its normal answer (no reset
// connection), the process must exit 0, and the ledger must have been closed
// cleanly: `ledger verify` passes and a new server opens it.
func TestGracefulShutdown(t *testing.T) {
	const promotions, reviews = 8, 8
	reg := framework.StartRegistry(t)
	e := newEnv(t, reg, withTokens(promotions))
	// Separate connections per request, so that no request waits behind
	// another on one HTTP/2 connection.
	e.client.Transport.(*http.Transport).ForceAttemptHTTP2 = false
	e.client.Transport.(*http.Transport).TLSClientConfig.NextProtos = []string{"http/1.1"}
	srv := e.sg.Start()
	refs := e.pushMany("shutdown/app", promotions+1)
	admitted := refs[promotions]
	if code, body, err := e.promote(e.tokens[0], admitted); err != nil || code != http.StatusCreated {
		t.Fatalf("promote: %d %v %s", code, err, body)
	}

	var inflight []*slowRequest
	for i := range promotions {
		b, _ := json.Marshal(map[string]string{"image": refs[i], "stage": "dev", "reason": "in flight at SIGTERM"})
		inflight = append(inflight, e.startSlow("/v1/promotions", e.tokens[i], b))
	}
	var uids []types.UID
	for range reviews {
		b, uid, err := podReview(admitted)
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
		inflight = append(inflight, e.startSlow("/admission/validate/dev", "", b))
	}
	// The server reads a request's headers before it is shut down only if
	// it has accepted the connection: a request on a new connection that is
	// answered, after all of the above were sent, orders them.
	if code, _, err := e.do(http.MethodGet, "/healthz", "", nil); err != nil || code != http.StatusOK {
		t.Fatalf("healthz: %d %v", code, err)
	}
	time.Sleep(200 * time.Millisecond)

	if err := srv.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Shutdown has begun once the listener is closed.
	eventually(t, 10*time.Second, func() error {
		c, err := net.DialTimeout("tcp", e.addr, time.Second)
		if err != nil {
			return nil
		}
		c.Close()
		return errors.New("still accepting connections")
	})

	for i, s := range inflight {
		r := s.finish()
		if r.err != nil {
			t.Errorf("request %d in flight at SIGTERM: %v", i, r.err)
			continue
		}
		if i < promotions {
			if r.code != http.StatusCreated {
				t.Errorf("promotion %d in flight at SIGTERM: %d %s", i, r.code, r.body)
				continue
			}
			if _, _, err := e.receipt(r.body); err != nil {
				t.Errorf("promotion %d: %v", i, err)
			}
			continue
		}
		resp, err := decodeReview(r.code, r.body, uids[i-promotions])
		if err != nil || !resp.Allowed {
			t.Errorf("review %d in flight at SIGTERM: %v %v", i-promotions, err, resp)
		}
	}
	if err := exitWithin(t, srv, 60*time.Second); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", err, srv.Tail(4<<10))
	}
	e.mustLedgerVerify()

	e.sg.Start()
	entries := e.entries()
	if len(entries) != promotions+1 {
		t.Errorf("reopened ledger has %d entries, want %d", len(entries), promotions+1)
	}
	got := map[string]bool{}
	for _, en := range entries {
		if en.Kind == ledger.KindPromotion {
			got[en.Digest] = true
		}
	}
	for _, ref := range refs {
		if !got[digestOf(ref)] {
			t.Errorf("promotion of %s is not in the reopened ledger", ref)
		}
	}
	if err := e.sg.Stop(); err != nil {
		t.Fatalf("serve exited with %v after SIGTERM", err)
	}
}
