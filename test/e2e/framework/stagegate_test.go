package framework

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// TestStartStagegate starts serve both ways the suites do (a generated
// config, and --dev), and drives the handle through stop, restart and a
// crash on the same installation.
func TestStartStagegate(t *testing.T) {
	tests := map[string][]StagegateOption{
		"generated config": {
			WithToken("", "tester", "pipeline"),
			testKeys(t),
			WithConfig("rateLimit:\n  perSecond: 5\n  burst: 7\n"),
		},
		"dev": {WithDev(), WithDevToken()},
	}
	for name, opts := range tests {
		t.Run(name, func(t *testing.T) {
			s := StartStagegate(t, opts...)
			if s.Token == "" {
				t.Fatal("no token")
			}
			checkpoint := func() (int, error) {
				req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, s.URL+"/v1/ledger/checkpoint", nil)
				if err != nil {
					t.Fatal(err)
				}
				req.Header.Set("Authorization", "Bearer "+s.Token)
				c := s.Client(t)
				defer c.CloseIdleConnections()
				resp, err := c.Do(req)
				if err != nil {
					return 0, err
				}
				resp.Body.Close()
				return resp.StatusCode, nil
			}
			// An empty ledger has no checkpoint; an unknown token would be 401.
			if code, err := checkpoint(); err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
				t.Fatalf("checkpoint with the token: %d %v", code, err)
			}

			if err := s.Stop(); err != nil {
				t.Fatalf("Stop: %v, want exit 0", err)
			}
			if _, err := checkpoint(); err == nil {
				t.Fatal("serve still answers after Stop")
			}
			s.Start()
			if code, err := checkpoint(); err != nil || (code != http.StatusOK && code != http.StatusNotFound) {
				t.Fatalf("checkpoint after a restart on the same address: %d %v", code, err)
			}
			first := s.Process()
			s.Kill()
			if first.Err() == nil {
				t.Error("a killed serve reports exit 0")
			}
			if p := s.Restart(); p == first {
				t.Error("Restart returned the old process")
			}
			if s.Logs() == "" {
				t.Error("no serve output kept")
			}
		})
	}
}

// testKeys installs signingtest's keys, which is quicker than a scrypt run
// of `stagegate keys generate`.
func testKeys(t testing.TB) StagegateOption {
	return WithKeys(func(dir string) { signingtest.WriteKeyDir(t, dir) })
}

// TestStartStagegateConfig checks that WithConfig merges over the generated
// config instead of replacing it.
func TestStartStagegateConfig(t *testing.T) {
	s := StartStagegate(t, WithoutStart(), testKeys(t),
		WithConfig("tls:\n  keyFile: /elsewhere/tls.key\n"), WithConfig("stages:\n- {name: only}\n"))
	b, err := os.ReadFile(s.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen: " + s.Addr, "certFile: " + s.CertDir, "keyFile: /elsewhere/tls.key", "name: only"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("config lacks %q:\n%s", want, b)
		}
	}
	if s.Process() != nil {
		t.Error("WithoutStart started serve")
	}
	if err := s.Signal(os.Interrupt); err == nil {
		t.Error("Signal before Start did not fail")
	}
}

// recordingTB notes whether Fatalf or Skipf was called, without ending
// the goroutine as the real ones do.
type recordingTB struct {
	testing.TB
	fatal, skip string
}

func (r *recordingTB) Helper()                           {}
func (r *recordingTB) Fatalf(format string, args ...any) { r.fatal = format }
func (r *recordingTB) Skipf(format string, args ...any)  { r.skip = format }

func TestSkipUnlessCI(t *testing.T) {
	tests := map[string]struct {
		ci                  string
		wantFatal, wantSkip bool
	}{
		"CI=true":  {ci: "true", wantFatal: true},
		"CI unset": {ci: "", wantSkip: true},
		"CI=false": {ci: "false", wantSkip: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			t.Setenv("CI", tc.ci)
			r := &recordingTB{TB: t}
			SkipUnlessCI(r, "no %s here", "tool")
			if (r.fatal != "") != tc.wantFatal || (r.skip != "") != tc.wantSkip {
				t.Errorf("fatal %q, skip %q; want fatal %v, skip %v", r.fatal, r.skip, tc.wantFatal, tc.wantSkip)
			}
		})
	}
}
