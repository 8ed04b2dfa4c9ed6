package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// boardBody signs in to s (once per handler) and returns the board's
// table body as the handler answers ?query.
func boardBody(t *testing.T, h http.Handler, cookie *http.Cookie, query string) string {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://sg/ui/?"+query, nil)
	req.AddCookie(cookie)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("board: %d %s", rec.Code, rec.Body)
	}
	body := rec.Body.String()
	i, j := strings.Index(body, "<tbody>"), strings.Index(body, "</tbody>")
	if i < 0 || j < i {
		t.Fatalf("board without a table body: %s", body)
	}
	return body[i:j]
}

func serve(t *testing.T, s *Server) (http.Handler, *http.Cookie) {
	t.Helper()
	mux := http.NewServeMux()
	s.Register(mux)
	return mux, signIn(t, mux)
}

// mutablePods is continuous validation whose counts change between two
// looks at the board, without a ledger entry.
type mutablePods struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *mutablePods) set(d string, n int) { m.mu.Lock(); m.n[d] = n; m.mu.Unlock() }

func (m *mutablePods) Running(digests []string, _ string, _ int) ([]inventory.RunningPod, int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return nil, m.n[digests[0]], nil
}

// TestBoardRowCache: a row drawn once is reused only while what it shows
// is the same. A revocation, a new promotion and a changed pod count
// (no ledger entry) each show on the next look, and the cached board is
// byte for byte the board a fresh server draws.
func TestBoardRowCache(t *testing.T) {
	l, _ := ledgertest.New(t)
	for i := range 3 {
		appendEntry(t, l, ledger.Entry{Kind: ledger.KindPromotion, Repository: "reg/app" + string(rune('a'+i)), Digest: digestN(i), Stage: "dev"})
	}
	pods := &mutablePods{n: map[string]int{}}
	s, err := New(l, oneToken{}, nil, []string{"dev", "prod"}, Keys{}, WithRunning(pods))
	if err != nil {
		t.Fatal(err)
	}
	h, cookie := serve(t, s)
	fresh := func() string {
		t.Helper()
		s2, err := New(l, oneToken{}, nil, []string{"dev", "prod"}, Keys{}, WithRunning(pods))
		if err != nil {
			t.Fatal(err)
		}
		h2, c2 := serve(t, s2)
		return boardBody(t, h2, c2, "")
	}

	first := boardBody(t, h, cookie, "")
	if again := boardBody(t, h, cookie, ""); again != first {
		t.Fatalf("the same board drew differently:\n%s\n%s", first, again)
	}
	steps := []struct {
		name   string
		change func()
		want   string
	}{
		{"revocation", func() {
			appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: "reg/appb", Digest: digestN(1), Stage: "dev", Reason: "CVE-1"})
		}, "CVE-1"},
		{"promotion", func() {
			appendEntry(t, l, ledger.Entry{Kind: ledger.KindPromotion, Repository: "reg/appa", Digest: digestN(0), Stage: "prod"})
		}, `<td data-stage="prod"><div class="digest promoted">`},
		{"pods running, no entry", func() { pods.set(digestN(2), 7) }, "· 7 pods"},
	}
	for _, st := range steps {
		if strings.Contains(boardBody(t, h, cookie, ""), st.want) {
			t.Fatalf("%s: the board shows %q before the change", st.name, st.want)
		}
		st.change()
		got := boardBody(t, h, cookie, "")
		if !strings.Contains(got, st.want) {
			t.Errorf("%s: the board does not show %q after it:\n%s", st.name, st.want, got)
		}
		if f := fresh(); got != f {
			t.Errorf("%s: the cached board differs from a fresh one:\n%s\n%s", st.name, got, f)
		}
	}
}

// TestBoardEscapesMarkup is the attack: a repository, a revocation
// reason and a break-glass workload that carry markup reach the board
// as text, drawn fresh and from the cache alike.
func TestBoardEscapesMarkup(t *testing.T) {
	l, _ := ledgertest.New(t)
	evil := `reg/x"><script>alert(1)</script>`
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindPromotion, Repository: evil, Digest: digestN(1), Stage: "dev"})
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindRevocation, Repository: evil, Digest: digestN(1), Stage: "dev",
		Reason: `"><img src=x onerror=alert(2)>`})
	appendEntry(t, l, ledger.Entry{Kind: ledger.KindBreakGlass, Repository: "ns/Deployment/w", Digest: digestN(2), Stage: "prod",
		Workload: `<b onmouseover=alert(3)>w</b>`, Images: []string{"reg.example/hot@" + digestN(2)}, Reason: "outage"})
	s, err := New(l, oneToken{}, nil, []string{"dev", "prod"}, Keys{})
	if err != nil {
		t.Fatal(err)
	}
	h, cookie := serve(t, s)
	for _, pass := range []string{"drawn", "cached"} {
		body := boardBody(t, h, cookie, "")
		for _, raw := range []string{"<script>", "<img", "<b ", `"><script`, `"><img`} {
			if strings.Contains(body, raw) {
				t.Errorf("%s: the board carries %q unescaped:\n%s", pass, raw, body)
			}
		}
		for _, esc := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(2)&gt;", "&lt;b onmouseover=alert(3)&gt;"} {
			if !strings.Contains(body, esc) {
				t.Errorf("%s: the board does not show %q as text:\n%s", pass, esc, body)
			}
		}
	}
}
