package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/testutil/fuzzseed"
)

var writeCorpus = flag.Bool("write-corpus", false, "also write the fuzz seeds to testdata/fuzz/<FuzzName>/")

// TestMain bounds the minimization of new inputs (fuzzseed.MinimizeLimit).
func TestMain(m *testing.M) { os.Exit(fuzzseed.Main(m)) }

// inputBodies seeds a corpus from the policy's example inputs in
// internal/policy/testdata, real promotions: the file as it is (a JSON
// object of fields the API does not know), and the request a pipeline
// would have sent for it, as a promotion and as a revocation.
func inputBodies(f *testing.F, c *fuzzseed.Corpus, contentType string) {
	c.Files(filepath.Join("..", "policy", "testdata", "promotion_input.json"), func(name string, body []byte) [][]any {
		var in struct {
			Image struct {
				Reference, Repository, Digest string
			}
			Stage  string
			Reason string
		}
		if err := json.Unmarshal(body, &in); err != nil || in.Image.Reference == "" {
			f.Fatalf("%s: not a promotion input (%v)", name, err)
		}
		promote, _ := json.Marshal(map[string]string{"image": in.Image.Reference, "stage": in.Stage, "reason": in.Reason})
		revoke, _ := json.Marshal(map[string]string{"digest": in.Image.Digest, "repository": in.Image.Repository, "stage": in.Stage, "reason": "cve"})
		return [][]any{{body, contentType}, {promote, contentType}, {revoke, contentType}}
	})
}

// recordingPromoter accepts everything and keeps what reached it.
type recordingPromoter struct {
	mu       sync.Mutex
	promotes []promotion.Request
	revokes  []promotion.Revocation
}

func (p *recordingPromoter) Promote(_ context.Context, req promotion.Request) (promotion.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.promotes = append(p.promotes, req)
	return promotion.Result{Created: true}, nil
}

func (p *recordingPromoter) Revoke(_ context.Context, req promotion.Revocation) (promotion.Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.revokes = append(p.revokes, req)
	return promotion.Result{Created: true}, nil
}

const fuzzToken = "fuzz-token"

// fuzzAPI is the API's real mux over a recordingPromoter, built once per
// target: building it per input cost more than the request itself.
type fuzzAPI struct {
	p   *recordingPromoter
	mux *http.ServeMux
}

func newFuzzAPI() *fuzzAPI {
	p := &recordingPromoter{}
	auth := api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{{SHA256: api.HashToken(fuzzToken), Subject: "ci", Groups: []string{"pipeline"}}}})
	a := api.New(p, nil, auth, []string{"dev", "prod"}, api.WithRateLimit(1e9, 1<<30))
	mux := http.NewServeMux()
	a.Register(mux)
	return &fuzzAPI{p: p, mux: mux}
}

// request posts body to path and returns the status, the body and what
// reached the promoter for this request alone.
func (f *fuzzAPI) request(path, contentType string, body []byte) (int, []byte, *recordingPromoter) {
	f.p.mu.Lock()
	f.p.promotes, f.p.revokes = nil, nil
	f.p.mu.Unlock()
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+fuzzToken)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	f.mux.ServeHTTP(rec, req)
	return rec.Code, rec.Body.Bytes(), f.p
}

// checkAnswer holds for both write endpoints: a malformed request gets a
// 4xx JSON error and never reaches the use case; a request that reaches it
// was one JSON object of known fields, no key twice.
func checkAnswer(t *testing.T, code int, out, body []byte, reached bool) {
	t.Helper()
	switch code {
	case http.StatusCreated:
		if !reached {
			t.Fatal("201 without reaching the promoter")
		}
		var m map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&m); err != nil || dec.More() {
			t.Fatalf("accepted a body that is not one JSON object: %q", body)
		}
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		if reached {
			t.Fatalf("HTTP %d but the promoter was called", code)
		}
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(out, &e); err != nil || e.Error == "" {
			t.Fatalf("HTTP %d without a JSON error: %q", code, out)
		}
	default:
		t.Fatalf("unexpected HTTP %d: %s", code, out)
	}
}

var apiSeeds = []string{
	``, `{}`, `null`, `[]`, `"x"`, `{"image":1}`, `{"image":"a"} {"image":"b"}`, `{"image":"a","image":"b"}`,
	`{"image":"a","Image":"b"}`, `{"image":"reg.example/app@sha256:` + strings.Repeat("a", 64) + `","stage":"prod","reason":"r","evidence":{"a":[1,2,{"b":null}]}}`,
	`{"evidence":` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`,
	`{"evidence":{"n":1e400}}`, `{"stage":"pro\u0000d"}`, `{"unknown":true}`, `{"image":"a"`,
	`{"digest":"sha256:` + strings.Repeat("A", 64) + `","repository":"a/../b","stage":"*","reason":"cve"}`,
	`{"digest":"sha256:x","digest":"sha256:y"}`, "\xff\xfe{}",
}

// FuzzPromotionRequest sends arbitrary bodies to POST /v1/promotions.
func FuzzPromotionRequest(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	inputBodies(f, c, "application/json")
	for _, s := range apiSeeds {
		c.Add([]byte(s), "application/json")
	}
	c.Add([]byte(`{"image":"a"}`), "text/plain")
	c.Add([]byte(`{"image":"a"}`), "application/json; charset=utf-8")
	srv := newFuzzAPI()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		code, out, p := srv.request("/v1/promotions", contentType, body)
		checkAnswer(t, code, out, body, len(p.promotes) > 0)
		if len(p.promotes) > 0 && p.promotes[0].Requester.Subject != "ci" {
			t.Fatalf("requester %+v, want the token's identity", p.promotes[0].Requester)
		}
	})
}

// FuzzRevocationRequest sends arbitrary bodies to POST /v1/revocations.
func FuzzRevocationRequest(f *testing.F) {
	c := fuzzseed.New(f, *writeCorpus)
	inputBodies(f, c, "application/json")
	for _, s := range apiSeeds {
		c.Add([]byte(s), "application/json")
	}
	c.Add([]byte(`{"digest":"sha256:`+strings.Repeat("b", 64)+`","repository":"r","stage":"dev"}`), "")
	srv := newFuzzAPI()
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		code, out, p := srv.request("/v1/revocations", contentType, body)
		checkAnswer(t, code, out, body, len(p.revokes) > 0)
		if len(p.revokes) > 0 && p.revokes[0].Requester.Subject != "ci" {
			t.Fatalf("requester %+v, want the token's identity", p.revokes[0].Requester)
		}
	})
}
