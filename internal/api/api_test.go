package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/app"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/secretfile"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/policies"
)

const (
	pipelineToken = "pipeline-secret-token"
	releaseToken  = "release-secret-token"
	outsiderToken = "outsider-secret-token"
	// nogroupsToken authenticates an identity with no groups at all.
	nogroupsToken = "nogroups-secret-token"
	// Approvers: alice is in security, bob and carol in release.
	aliceToken = "alice-secret-token"
	bobToken   = "bob-secret-token"
	carolToken = "carol-secret-token"
)

type env struct {
	srv      *httptest.Server
	ledger   *ledger.Ledger
	sample   registry.Sample
	host     string
	verifier *signing.Verifier
	logV     interface{ Name() string }
	clock    *fakeClock
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newEnv(t *testing.T, opts ...api.Option) *env {
	t.Helper()
	return newEnvWith(t, nil, policies.FS, opts...)
}

// newEnvWith is newEnv with the default config changed by edit, and the
// policies of pols.
func newEnvWith(t *testing.T, edit func(*config.Config), pols fs.FS, opts ...api.Option) *env {
	t.Helper()
	l, logV := ledgertest.New(t)
	signer, verifier := signingtest.Signer(t), signingtest.Verifier(t)
	cfg := config.Default()
	if edit != nil {
		edit(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(context.Background(), pols, cfg.PolicyData(), policy.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{now: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)}
	svc := promotion.New(l, signer, pol, registry.New(registry.WithTimeout(3*time.Second)), cfg.StageNames(), promotion.WithClock(clock.Now),
		promotion.WithDuties(app.Duties(cfg)), promotion.WithApprovals(app.ApprovalRules(cfg)), promotion.WithWindows(windowRules(t, cfg)))
	auth := api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{
		{SHA256: api.HashToken(pipelineToken), Subject: "ci", Groups: []string{"pipeline"}},
		{SHA256: api.HashToken(releaseToken), Subject: "release-manager", Groups: []string{"release"}},
		{SHA256: api.HashToken(outsiderToken), Subject: "outsider", Groups: []string{"visitors"}},
		{SHA256: api.HashToken(nogroupsToken), Subject: "nobody"},
		{SHA256: api.HashToken(aliceToken), Subject: "alice", Groups: []string{"security"}},
		{SHA256: api.HashToken(bobToken), Subject: "bob", Groups: []string{"release"}},
		{SHA256: api.HashToken(carolToken), Subject: "carol", Groups: []string{"release"}},
	}})
	a := api.New(svc, l, auth, cfg.StageNames(), append([]api.Option{api.WithRateLimit(10000, 10000), api.WithApprovals(svc), api.WithStages(svc)}, opts...)...)
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &env{srv: srv, ledger: l, sample: sample, host: emb.Host, verifier: verifier, logV: logV, clock: clock}
}

func (e *env) post(t *testing.T, token, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func (e *env) get(t *testing.T, token, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) (int, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) size(t *testing.T) uint64 {
	t.Helper()
	n, err := e.ledger.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func promoteBody(image, stage string) string {
	return fmt.Sprintf(`{"image":%q,"stage":%q,"reason":"test"}`, image, stage)
}

func TestPromotionFlow(t *testing.T) {
	e := newEnv(t)
	code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
	if code != http.StatusCreated {
		t.Fatalf("promote dev: %d %s", code, body)
	}
	var rc ledger.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		t.Fatal(err)
	}
	if rc.Entry.Stage != "dev" || rc.Entry.Subject != "ci" || !registry.ValidDigest(rc.Entry.Digest) {
		t.Fatalf("unexpected entry %+v", rc.Entry)
	}
	lv, _ := ledgertestVerifier(e)
	if err := ledger.VerifyReceipt(rc, lv, signing.CheckEntry(e.verifier)); err != nil {
		t.Fatalf("receipt does not verify: %v", err)
	}

	// Idempotent: the same digest again (by digest this time) is 200 with the same entry.
	code, body = e.post(t, pipelineToken, "/v1/promotions", promoteBody(rc.Entry.Repository+"@"+rc.Entry.Digest, "dev"))
	var again ledger.Receipt
	_ = json.Unmarshal(body, &again)
	if code != http.StatusOK || again.Entry.Index != rc.Entry.Index {
		t.Fatalf("second promotion: %d, index %d (want 200, %d): %s", code, again.Entry.Index, rc.Entry.Index, body)
	}

	// Skipping test for stage is refused with the policy's message.
	before := e.size(t)
	code, body = e.post(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "prod"))
	if code != http.StatusForbidden || !strings.Contains(string(body), "violations") || !strings.Contains(string(body), `not promoted to stage \"stage\"`) {
		t.Fatalf("prod from dev: %d %s", code, body)
	}
	if e.size(t) != before {
		t.Fatal("a denied promotion wrote to the ledger")
	}

	if code, body = e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "test")); code != http.StatusCreated {
		t.Fatalf("promote test: %d %s", code, body)
	}
	// stage needs the release group and an hour in test.
	code, body = e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "stage"))
	if code != http.StatusForbidden || !strings.Contains(string(body), "release") {
		t.Fatalf("pipeline into stage: %d %s", code, body)
	}
	code, body = e.post(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "stage"))
	if code != http.StatusForbidden || !strings.Contains(strings.ToLower(string(body)), "soak") {
		t.Fatalf("stage before soak: %d %s", code, body)
	}
	e.clock.Add(2 * time.Hour)
	if code, body = e.post(t, releaseToken, "/v1/promotions", promoteBody(e.sample.Image, "stage")); code != http.StatusCreated {
		t.Fatalf("stage after soak: %d %s", code, body)
	}

	// Status shows the digest in dev, test and stage.
	code, body = e.get(t, outsiderToken, "/v1/images/"+rc.Entry.Digest)
	if code != http.StatusOK {
		t.Fatalf("status: %d %s", code, body)
	}
	var view struct {
		States  map[string][]ledger.State `json:"states"`
		History []ledger.Entry            `json:"history"`
	}
	if err := json.Unmarshal(body, &view); err != nil {
		t.Fatal(err)
	}
	for _, st := range []string{"dev", "test", "stage"} {
		if len(view.States[st]) != 1 || !view.States[st][0].Active() {
			t.Errorf("state in %s = %+v", st, view.States[st])
		}
	}
	if len(view.History) != 3 {
		t.Errorf("history has %d entries, want 3", len(view.History))
	}
	if code, _ = e.get(t, outsiderToken, "/v1/images/"+rc.Entry.Repository); code != http.StatusOK {
		t.Errorf("status by repository: %d", code)
	}

	// Revocation: withdrawn from test by the pipeline, which may revoke
	// where it promotes; test may then not feed stage, and a revocation is
	// idempotent.
	rev := fmt.Sprintf(`{"digest":%q,"repository":%q,"stage":"test","reason":"CVE-2026-0001"}`, rc.Entry.Digest, rc.Entry.Repository)
	if code, body = e.post(t, pipelineToken, "/v1/revocations", rev); code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if code, body = e.post(t, pipelineToken, "/v1/revocations", rev); code != http.StatusOK {
		t.Fatalf("revoke again: %d %s", code, body)
	}
	st, _, err := e.ledger.State(rc.Entry.Digest, "test")
	if err != nil || st.Active() || !st.Revoked {
		t.Fatalf("state after revocation = %+v, %v", st, err)
	}

	// Ledger read endpoints.
	if code, body = e.get(t, outsiderToken, "/v1/ledger/checkpoint"); code != http.StatusOK {
		t.Fatalf("checkpoint: %d %s", code, body)
	}
	cp, err := ledger.ParseCheckpoint(string(body), lv)
	if err != nil || cp.Size != e.size(t) {
		t.Fatalf("checkpoint %+v: %v", cp, err)
	}
	if code, body = e.get(t, outsiderToken, "/v1/ledger/proof/consistency?from=1&to="+fmt.Sprint(cp.Size)); code != http.StatusOK {
		t.Fatalf("consistency: %d %s", code, body)
	}
	var cons ledger.ConsistencyProof
	_ = json.Unmarshal(body, &cons)
	if err := ledger.VerifyConsistency(ledger.Checkpoint{Origin: cp.Origin, Size: 1, Root: cons.FromRoot}, cp, cons); err != nil {
		t.Fatalf("consistency proof does not verify: %v", err)
	}
	if code, body = e.get(t, outsiderToken, "/v1/ledger/proof/inclusion?index=0&size="+fmt.Sprint(cp.Size)); code != http.StatusOK {
		t.Fatalf("inclusion: %d %s", code, body)
	}
	if code, body = e.get(t, outsiderToken, "/v1/ledger/entries?start=0&limit=2"); code != http.StatusOK || !strings.Contains(string(body), `"index": 1`) {
		t.Fatalf("entries: %d %s", code, body)
	}
}

func ledgertestVerifier(e *env) (noteVerifier, error) { return e.logV.(noteVerifier), nil }

func TestBadInputChangesNothing(t *testing.T) {
	e := newEnv(t)
	// One good promotion so that revocations have something to aim at.
	if code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev")); code != http.StatusCreated {
		t.Fatalf("setup: %d %s", code, body)
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	digest := "sha256:" + strings.Repeat("a", 64)

	tests := map[string]struct {
		token, path, body string
		want              int
		mention           string
	}{
		"no token":           {"", "/v1/promotions", promoteBody(e.sample.Image, "dev"), 401, "authentication required"},
		"wrong token":        {"nope", "/v1/promotions", promoteBody(e.sample.Image, "dev"), 401, "invalid bearer token"},
		"malformed json":     {pipelineToken, "/v1/promotions", `{"image":`, 400, "malformed JSON"},
		"unknown field":      {pipelineToken, "/v1/promotions", `{"image":"x","stage":"dev","colour":"red"}`, 400, "unknown field"},
		"duplicate key":      {pipelineToken, "/v1/promotions", `{"image":"a","image":"b","stage":"dev"}`, 400, "duplicate key"},
		"trailing data":      {pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev") + "{}", 400, "trailing"},
		"unknown stage":      {pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "qa"), 400, `unknown stage`},
		"missing stage":      {pipelineToken, "/v1/promotions", `{"image":"` + e.sample.Image + `"}`, 400, "stage is required"},
		"missing image":      {pipelineToken, "/v1/promotions", `{"stage":"dev"}`, 400, "image is required"},
		"invalid reference":  {pipelineToken, "/v1/promotions", promoteBody("Not A Ref!", "dev"), 400, "invalid image reference"},
		"sha512 digest":      {pipelineToken, "/v1/promotions", promoteBody(e.host+"/sample/app@sha512:"+strings.Repeat("a", 128), "dev"), 400, "sha256"},
		"image not found":    {pipelineToken, "/v1/promotions", promoteBody(e.host+"/sample/app:nope", "dev"), 404, "not found"},
		"registry down":      {pipelineToken, "/v1/promotions", promoteBody(dead+"/sample/app:1.0", "dev"), 502, "unreachable"},
		"group not allowed":  {outsiderToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"), 403, "violations"},
		"oversized body":     {pipelineToken, "/v1/promotions", `{"image":"` + strings.Repeat("a", 2<<20) + `"}`, 413, "larger than"},
		"revoke bad digest":  {pipelineToken, "/v1/revocations", `{"digest":"sha256:ABC","stage":"dev","reason":"x"}`, 400, "sha256"},
		"revoke no reason":   {pipelineToken, "/v1/revocations", `{"digest":"` + digest + `","stage":"dev"}`, 400, "reason"},
		"revoke unpromoted":  {pipelineToken, "/v1/revocations", `{"digest":"` + digest + `","stage":"dev","reason":"x"}`, 409, "not promoted"},
		"revoke bad stage":   {pipelineToken, "/v1/revocations", `{"digest":"` + digest + `","stage":"../prod","reason":"x"}`, 400, "unknown stage"},
		"control chars":      {pipelineToken, "/v1/promotions", `{"image":"` + e.sample.Image + `","stage":"dev","reason":"a\u0000b"}`, 400, "control"},
		"deep nesting":       {pipelineToken, "/v1/promotions", `{"image":"x","stage":"dev","evidence":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, 400, "nested"},
		"wrong content type": {pipelineToken, "/v1/promotions", `image=x`, 415, "Content-Type"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			before := e.size(t)
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+tc.path, bytes.NewBufferString(tc.body))
			req.Header.Set("Content-Type", "application/json")
			if name == "wrong content type" {
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			code, body := do(t, req)
			if code != tc.want || !strings.Contains(string(body), tc.mention) {
				t.Fatalf("got %d %s; want %d mentioning %q", code, body, tc.want, tc.mention)
			}
			if after := e.size(t); after != before {
				t.Fatalf("ledger grew from %d to %d", before, after)
			}
		})
	}
}

func TestConcurrentIdenticalPromotionsYieldOneEntry(t *testing.T) {
	e := newEnv(t)
	const n = 50
	var wg sync.WaitGroup
	codes := make([]int, n)
	indexes := make([]uint64, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
			var rc ledger.Receipt
			_ = json.Unmarshal(body, &rc)
			codes[i], indexes[i] = code, rc.Entry.Index
		}()
	}
	wg.Wait()
	created := 0
	for i, c := range codes {
		switch c {
		case http.StatusCreated:
			created++
		case http.StatusOK:
		default:
			t.Fatalf("request %d answered %d", i, c)
		}
		if indexes[i] != 0 {
			t.Fatalf("request %d got index %d", i, indexes[i])
		}
	}
	if created != 1 || e.size(t) != 1 {
		t.Fatalf("created=%d size=%d, want exactly one entry", created, e.size(t))
	}
}

func TestMultiArchIndexRecordsPlatforms(t *testing.T) {
	e := newEnv(t)
	code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Index, "dev"))
	if code != http.StatusCreated {
		t.Fatalf("%d %s", code, body)
	}
	var rc ledger.Receipt
	_ = json.Unmarshal(body, &rc)
	if len(rc.Entry.Platforms) != 2 {
		t.Fatalf("platforms = %v", rc.Entry.Platforms)
	}
	for _, p := range rc.Entry.Platforms {
		st, ok, err := e.ledger.State(p, "dev")
		if err != nil || !ok || !st.Active() {
			t.Errorf("platform %s not active in dev: %+v %v", p, st, err)
		}
	}
}

// A client over its rate gets 429 with the real wait in Retry-After, not
// a fixed second that would have it retry nine times in vain.
func TestRetryAfterIsTheRealWait(t *testing.T) {
	auth := api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(pipelineToken), Subject: "ci"}}})
	tests := map[string]struct {
		perSecond float64
		want      string
	}{
		"one every ten seconds": {0.1, "10"},
		"two a second":          {2, "1"},
		"one a minute":          {1.0 / 60, "60"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := api.New(nil, nil, auth, []string{"dev"}, api.WithRateLimit(tc.perSecond, 1))
			mux := http.NewServeMux()
			a.Register(mux)
			srv := httptest.NewServer(mux)
			defer srv.Close()
			send := func() *http.Response {
				// A malformed body: the first request is refused before it
				// reaches the promotion service, but after the rate limit.
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/promotions", strings.NewReader("{"))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+pipelineToken)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			if r := send(); r.StatusCode != http.StatusBadRequest {
				t.Fatalf("first request: %d, want 400", r.StatusCode)
			}
			r := send()
			if r.StatusCode != http.StatusTooManyRequests {
				t.Fatalf("second request: %d, want 429", r.StatusCode)
			}
			if got := r.Header.Get("Retry-After"); got != tc.want {
				t.Errorf("Retry-After = %q, want %q", got, tc.want)
			}
		})
	}
}

// The token file holds who may write, so it gets the signing keys' check.
func TestTokenFilePermissions(t *testing.T) {
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	body := "tokens:\n- {sha256: " + api.HashToken("x") + ", subject: ci}\n"
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := api.LoadTokens(p); !errors.Is(err, secretfile.ErrPermissions) {
		t.Fatalf("LoadTokens of a 0644 file = %v, want ErrPermissions", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.LoadTokens(p); err != nil {
		t.Fatal(err)
	}
}
