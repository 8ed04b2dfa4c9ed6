package web

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
)

// TestSignInWithClientCertificate: with no token in the form, the
// connection's verified client certificate signs the person in, as the
// API's Authenticator reads it (CN the subject, O the groups); without
// one, the empty form is refused.
func TestSignInWithClientCertificate(t *testing.T) {
	c := &clock{t: time.Unix(0, 0)}
	s, err := New(emptyLedger{}, api.NewAuthenticator(nil), http.NotFoundHandler(), []string{"dev"}, Keys{}, WithClock(c.now))
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	s.Register(mux)
	cert := &x509.Certificate{Subject: pkix.Name{CommonName: "alice", Organization: []string{"security"}}}
	for name, tt := range map[string]struct {
		tls        *tls.ConnectionState
		wantStatus int
	}{
		"verified certificate": {tls: &tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{cert}}}, wantStatus: http.StatusSeeOther},
		// A certificate the server did not verify (no chain) is no identity.
		"unverified certificate": {tls: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{cert}}, wantStatus: http.StatusUnauthorized},
		"no certificate":         {tls: &tls.ConnectionState{}, wantStatus: http.StatusUnauthorized},
	} {
		t.Run(name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			get := httptest.NewRequest(http.MethodGet, "https://sg/ui/signin", nil)
			get.TLS = tt.tls
			mux.ServeHTTP(rec, get)
			if tt.tls.VerifiedChains != nil && !strings.Contains(rec.Body.String(), "client certificate") {
				t.Errorf("the form does not offer the certificate")
			}
			var form url.Values
			for _, ck := range rec.Result().Cookies() {
				if ck.Name == signinCookie {
					form = url.Values{"csrf": {ck.Value}}
				}
			}
			post := httptest.NewRequest(http.MethodPost, "https://sg/ui/signin", strings.NewReader(form.Encode()))
			post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			post.TLS = tt.tls
			post.AddCookie(&http.Cookie{Name: signinCookie, Value: form.Get("csrf")})
			rec = httptest.NewRecorder()
			mux.ServeHTTP(rec, post)
			if rec.Code != tt.wantStatus {
				t.Fatalf("sign-in: %d, want %d:\n%s", rec.Code, tt.wantStatus, rec.Body)
			}
			if tt.wantStatus != http.StatusSeeOther {
				return
			}
			for _, ss := range s.sessions.byKey {
				if ss.id.Subject == "alice" && ss.id.Method == "mtls" && ss.id.Groups[0] == "security" {
					return
				}
			}
			t.Errorf("no session for alice (security, mtls)")
		})
	}
}
