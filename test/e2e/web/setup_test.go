package web

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// install is a serve with three identities: ci (pipeline) promotes and
// may revoke in dev, alice (security) approves, mallory has no groups.
type install struct {
	sg                 *framework.Stagegate
	reg                *framework.Registry
	ci, alice, mallory string
}

func start(t *testing.T) *install {
	t.Helper()
	reg := framework.StartRegistry(t)
	sg := framework.StartStagegate(t,
		framework.WithToken("", "ci", "pipeline"),
		framework.WithToken("", "alice", "security"),
		framework.WithToken("", "mallory"),
		framework.WithConfig(fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [pipeline], minSoak: 0s}
- {name: test, groups: [pipeline], minSoak: 0s}
- {name: prod, groups: [pipeline], minSoak: 0s, approvals: {required: 1, groups: [security]}}
`, reg.Addr)))
	return &install{sg: sg, reg: reg, ci: sg.Tokens[0], alice: sg.Tokens[1], mallory: sg.Tokens[2]}
}

// promote pushes a new image to repo and promotes it through stages with
// the CLI, returning its digest.
func (in *install) promote(t *testing.T, repo string, stages ...string) string {
	t.Helper()
	ref, err := in.reg.PushRandom(repo + ":1")
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range stages {
		in.sg.Token = in.ci
		in.sg.MustRun(t, in.sg.ClientFlags("promote", ref, "--stage", st, "--reason", "e2e", "-o", "json")...)
	}
	return ref[strings.LastIndexByte(ref, '@')+1:]
}

// ledgerSize is the number of entries, read through the API.
func (in *install) ledgerSize(t *testing.T) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, in.sg.URL+"/v1/ledger/entries?limit=1000", nil)
	req.Header.Set("Authorization", "Bearer "+in.ci)
	resp, err := in.sg.Client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	return len(body.Entries)
}

// client is an HTTP client that keeps cookies and does not follow
// redirects, so that each answer is seen as the browser gets it.
type client struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (in *install) client(t *testing.T) *client {
	c := in.sg.Client(t)
	c.Jar, _ = cookiejar.New(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &client{t: t, base: in.sg.URL, c: c}
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (b *client) do(method, path string, form url.Values, header ...string) answer {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the CSRF token of the page at path.
func (b *client) csrf(path string) string {
	b.t.Helper()
	a := b.do(http.MethodGet, path, nil)
	m := csrfField.FindStringSubmatch(a.body)
	if m == nil {
		b.t.Fatalf("GET %s: %d, no csrf field in:\n%s", path, a.status, a.body)
	}
	return m[1]
}

// signIn signs in with token and checks the session cookie's attributes.
func (b *client) signIn(token string) {
	b.t.Helper()
	a := b.do(http.MethodPost, "/ui/signin", url.Values{"csrf": {b.csrf("/ui/signin")}, "token": {token}, "next": {"/ui/"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/ui/" {
		b.t.Fatalf("sign-in: %d %s, want 303 to /ui/:\n%s", a.status, a.header.Get("Location"), a.body)
	}
	var cookie string
	for _, c := range a.header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "__Host-stagegate-session=") {
			cookie = c
		}
	}
	for _, want := range []string{"HttpOnly", "Secure", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			b.t.Errorf("session cookie %q lacks %s", cookie, want)
		}
	}
}

// sessionCookie is the browser's session cookie value.
func (b *client) sessionCookie() string {
	u, _ := url.Parse(b.base)
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "__Host-stagegate-session" {
			return c.Value
		}
	}
	return ""
}

// servingCert is the certificate serve presents.
func (in *install) servingCert(t *testing.T) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", in.sg.Addr, &tls.Config{RootCAs: in.sg.CAPool(t), MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// proxy is a reverse proxy to serve, trusting its CA, for the tests that
// sit between the browser and serve.
func (in *install) proxy(t *testing.T) *httputil.ReverseProxy {
	t.Helper()
	target, err := url.Parse(in.sg.URL)
	if err != nil {
		t.Fatal(err)
	}
	p := httputil.NewSingleHostReverseProxy(target)
	p.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: in.sg.CAPool(t), MinVersion: tls.VersionTLS12}}
	return p
}

// rewriteJSON replaces the JSON body of r with what edit makes of it.
func rewriteJSON(r *http.Response, edit func(ans map[string]any)) error {
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		return err
	}
	var ans map[string]any
	if err := json.Unmarshal(raw, &ans); err != nil {
		return err
	}
	edit(ans)
	out, err := json.Marshal(ans)
	if err != nil {
		return err
	}
	r.Body = io.NopCloser(bytes.NewReader(out))
	r.ContentLength = int64(len(out))
	r.Header.Set("Content-Length", strconv.Itoa(len(out)))
	return nil
}
