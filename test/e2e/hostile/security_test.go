package hostile

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

func TestAuthentication(t *testing.T) {
	s := start(t)
	body := map[string]any{"image": s.registry + "/sample/app:1.0", "stage": "dev", "reason": "r"}
	for name, tc := range map[string]struct {
		token string
		want  int
	}{
		"no token":       {"", http.StatusUnauthorized},
		"wrong token":    {"not-" + releaseToken, http.StatusUnauthorized},
		"token prefix":   {releaseToken[:8], http.StatusUnauthorized},
		"outsider token": {outsiderToken, http.StatusForbidden},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := s.do(http.MethodPost, "/v1/promotions", tc.token, "application/json", body)
			checkAPIError(t, code, out, tc.want)
			if tc.want == http.StatusForbidden {
				var e struct {
					Violations []string `json:"violations"`
				}
				if json.Unmarshal(out, &e); len(e.Violations) == 0 || !strings.Contains(e.Violations[0], "outsider") {
					t.Fatalf("403 without the policy's violation: %s", out)
				}
			}
			if n := s.size(); n != 0 {
				t.Fatalf("ledger has %d entries", n)
			}
		})
	}
}

func TestRateLimit(t *testing.T) {
	s := start(t, framework.WithConfig("rateLimit:\n  perSecond: 0.5\n  burst: 3\n"))
	var limited *http.Response
	for i := 0; i < 10 && limited == nil; i++ {
		req, _ := http.NewRequest(http.MethodPost, s.url+"/v1/revocations", strings.NewReader(`{}`))
		req.Header.Set("Authorization", "Bearer "+s.token)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited = resp
		}
	}
	if limited == nil {
		t.Fatal("10 quick writes with burst 3 were never limited")
	}
	if limited.Header.Get("Retry-After") == "" {
		t.Fatal("429 without Retry-After")
	}
	// The limit is per identity: another identity is not throttled.
	code, _ := s.do(http.MethodPost, "/v1/revocations", outsiderToken, "application/json", `{}`)
	if code == http.StatusTooManyRequests {
		t.Fatal("another identity was throttled too")
	}
}

func TestTLSVersions(t *testing.T) {
	s := start(t)
	for name, tc := range map[string]struct {
		min, max uint16
		ok       bool
	}{
		"TLS 1.0": {tls.VersionTLS10, tls.VersionTLS10, false},
		"TLS 1.1": {tls.VersionTLS11, tls.VersionTLS11, false},
		"TLS 1.2": {tls.VersionTLS12, tls.VersionTLS12, true},
		"TLS 1.3": {tls.VersionTLS13, tls.VersionTLS13, true},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1", MinVersion: tc.min, MaxVersion: tc.max})
			if err == nil {
				c.Close()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("handshake error %v, want success %v", err, tc.ok)
			}
		})
	}
}

// TestSlowloris sends request headers one byte at a time; the server's
// ReadHeaderTimeout (5 s) must cut the connection long before the headers
// could finish.
func TestSlowloris(t *testing.T) {
	s := start(t)
	c, err := tls.Dial("tcp", s.addr, &tls.Config{RootCAs: s.pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	closed := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, c)
		closed <- err
	}()
	header := "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + strings.Repeat("a", 1000)
	for i := 0; i < len(header); i++ {
		select {
		case <-closed:
			if d := time.Since(begin); d > 12*time.Second {
				t.Fatalf("connection cut after %v, want about 5s", d)
			}
			return
		case <-time.After(250 * time.Millisecond):
		}
		if _, err := c.Write([]byte{header[i]}); err != nil {
			return // cut while we were writing
		}
		if time.Since(begin) > 20*time.Second {
			t.Fatal("a client sending headers byte by byte held the connection for 20s")
		}
	}
	t.Fatal("the whole slow header was accepted")
}

func TestBodyCaps(t *testing.T) {
	s := start(t)
	big := `{"reason":"` + strings.Repeat("a", 2<<20) + `"}`
	for _, path := range []string{"/v1/promotions", "/v1/revocations"} {
		code, out := s.do(http.MethodPost, path, s.token, "application/json", big)
		checkAPIError(t, code, out, http.StatusRequestEntityTooLarge)
	}
	code, out := s.do(http.MethodPost, "/admission/validate/dev", "", "application/json", `{"x":"`+strings.Repeat("a", 4<<20)+`"}`)
	checkDenied(t, code, out, "larger than")
	// A body on a read endpoint is never read, so it cannot cost memory.
	code, out = s.do(http.MethodGet, "/v1/ledger/entries", s.token, "application/json", strings.Repeat("a", 2<<20))
	if code != http.StatusNotFound && code != http.StatusOK && code != http.StatusBadRequest {
		t.Fatalf("GET with a big body: HTTP %d %.200s", code, out)
	}
}

// TestPrivateKeyPermissions: serve refuses keys readable by group or others.
func TestPrivateKeyPermissions(t *testing.T) {
	s := start(t)
	s.stop()
	for _, tc := range []struct {
		file string
		mode os.FileMode
	}{{"cosign.key", 0o640}, {"log.key", 0o604}} {
		t.Run(tc.file, func(t *testing.T) {
			p := filepath.Join(s.dataDir, "keys", tc.file)
			if err := os.Chmod(p, tc.mode); err != nil {
				t.Fatal(err)
			}
			defer os.Chmod(p, 0o600)
			proc := s.sg.Spawn()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			err := proc.Wait(ctx)
			if ctx.Err() != nil {
				proc.Kill()
				t.Fatal("serve started with a group-readable key")
			}
			out := proc.Output()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("serve: %v, want a non-zero exit", err)
			}
			if !strings.Contains(string(out), "chmod 600") || !strings.Contains(string(out), tc.file) {
				t.Fatalf("serve's message does not say to chmod 600 %s:\n%s", tc.file, out)
			}
		})
	}
}

// TestSecretsNeverLogged runs a full scenario at debug level and scans
// everything serve wrote for the token, the key password and the private
// keys. --dev prints its generated token once, by design; that one line is
// allowed.
func TestSecretsNeverLogged(t *testing.T) {
	const password = "hostile-key-password-51c3"
	s := start(t, framework.WithDevToken(), framework.WithLogLevel("debug"), framework.WithEnv("STAGEGATE_KEY_PASSWORD="+password))
	_, digest := s.promote("dev")
	s.promote("test")
	app := s.registry + "/sample/app"
	s.do(http.MethodPost, "/v1/revocations", s.token, "application/json", map[string]any{"digest": digest, "stage": "test", "reason": "cve"})
	s.do(http.MethodPost, "/admission/validate/dev", "", "application/json", review("a1", app+"@"+digest))
	s.do(http.MethodPost, "/admission/validate/test", "", "application/json", review("a2", app+"@"+digest))
	s.do(http.MethodPost, "/admission/validate/dev", "", "application/json", `{"broken`)
	s.do(http.MethodPost, "/v1/promotions", s.token+"x", "application/json", `{}`)
	s.do(http.MethodPost, "/v1/promotions", "Bearer "+s.token, "application/json", `{}`)
	s.do(http.MethodPost, "/v1/promotions", s.token, "application/json", `{"image":"`+s.token+`"}`)
	s.do(http.MethodGet, "/v1/images/"+digest, s.token, "", nil)
	s.do(http.MethodGet, "/metrics", "", "", nil)
	if out, err := s.stagegate([]string{"STAGEGATE_KEY_PASSWORD=" + password}, "ledger", "verify", "--data-dir", s.dataDir, "--ledger", copyFile(t, filepath.Join(s.dataDir, "ledger.db"))); err != nil {
		t.Fatalf("ledger verify: %v\n%s", err, out)
	}
	s.stop()

	secrets := map[string]string{"token": s.token, "key password": password}
	for _, f := range []string{"keys/cosign.key", "keys/log.key", "certs/tls.key", "certs/ca.key"} {
		b, err := os.ReadFile(filepath.Join(s.dataDir, f))
		if err != nil {
			continue // not every layout has every file
		}
		for i, line := range strings.Split(string(b), "\n") {
			if line = strings.TrimSpace(line); len(line) >= 20 && !strings.HasPrefix(line, "-----") {
				secrets[f+" line "+string(rune('0'+i%10))] = line
			}
		}
	}
	shown := 0
	sc := bufio.NewScanner(strings.NewReader(s.out()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "dev: bearer token for subject") && strings.HasSuffix(line, "shown once: "+s.token) {
			shown++
			continue
		}
		for what, secret := range secrets {
			if strings.Contains(line, secret) {
				t.Errorf("the %s appears in serve's output: %.200s", what, line)
			}
		}
	}
	if shown != 1 {
		t.Errorf("the dev token was shown %d times, want once", shown)
	}
	if !strings.Contains(s.out(), "level=DEBUG") && !strings.Contains(s.out(), "level=INFO") {
		t.Errorf("serve logged nothing; the scan proves nothing:\n%s", s.out())
	}
}

func copyFile(t testing.TB, src string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return dst
}
