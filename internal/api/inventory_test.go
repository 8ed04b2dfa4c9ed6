package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/inventory"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/policies"
)

// fakeInventory stands in for the controller, whose answers
// internal/inventory tests against a real API server; this tests what the
// API makes of them.
type fakeInventory struct {
	mu      sync.Mutex
	err     error
	pods    map[string][]inventory.RunningPod // by digest
	asked   [][]string
	stages  []string
	queries []inventory.ViolationQuery
	page    []inventory.Violation
	next    string
}

func (f *fakeInventory) Running(digests []string, stage string, limit int) ([]inventory.RunningPod, int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, slices.Clone(digests))
	f.stages = append(f.stages, stage)
	if f.err != nil {
		return nil, 0, f.err
	}
	var out []inventory.RunningPod
	for _, d := range digests {
		out = append(out, f.pods[d]...)
	}
	return out[:min(limit, len(out))], len(out), nil
}

func (f *fakeInventory) Violations(q inventory.ViolationQuery) ([]inventory.Violation, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries = append(f.queries, q)
	return f.page, f.next, f.err
}

// Reaches adds a made-up platform digest, so that the test sees the API
// ask for what Reaches says and not only the entry's digest.
func (f *fakeInventory) Reaches(e ledger.Entry) []string { return []string{e.Digest, platformDigest} }

var platformDigest = "sha256:" + strings.Repeat("e", 64)

type runningBody struct {
	Running []struct {
		Namespace, Name, Owner, Stage string
		Containers                    []string
	} `json:"running"`
	RunningTotal   int     `json:"runningTotal"`
	RunningUnknown *string `json:"runningUnknown"`
}

func (b runningBody) String() string {
	s := ""
	for _, p := range b.Running {
		s += fmt.Sprintf("%s/%s %s %s %v; ", p.Namespace, p.Name, p.Owner, p.Stage, p.Containers)
	}
	u := "-"
	if b.RunningUnknown != nil {
		u = *b.RunningUnknown
	}
	return fmt.Sprintf("%stotal=%d unknown=%s", s, b.RunningTotal, u)
}

func pod(ns, name, stage string) inventory.RunningPod {
	return inventory.RunningPod{Namespace: ns, Name: name, Stage: stage, Containers: []string{"app"},
		Owner: corev1.ObjectReference{Kind: "ReplicaSet", Name: name + "-rs"}}
}

// TestImageRunning: the image status says where the digests it names run,
// or why it cannot say; never an empty list that reads as "nowhere".
func TestImageRunning(t *testing.T) {
	inv := &fakeInventory{pods: map[string][]inventory.RunningPod{}}
	e := newEnv(t, api.WithInventory(inv))
	off := newEnv(t)
	var rc ledger.Receipt
	for _, env := range []*env{e, off} {
		code, body := env.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
		if code != http.StatusCreated {
			t.Fatalf("promote: %d %s", code, body)
		}
		if err := json.Unmarshal(body, &rc); err != nil {
			t.Fatal(err)
		}
	}
	inv.pods[rc.Entry.Digest] = []inventory.RunningPod{pod("shop", "app", "dev")}
	get := func(t *testing.T, env *env, key string) runningBody {
		t.Helper()
		code, body := env.get(t, outsiderToken, "/v1/images/"+key)
		if code != http.StatusOK {
			t.Fatalf("status %s: %d %s", key, code, body)
		}
		var b runningBody
		if err := json.Unmarshal(body, &b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := map[string]struct {
		env  *env
		key  string
		err  error
		want string
	}{
		"by digest":                 {env: e, key: rc.Entry.Digest, want: "shop/app ReplicaSet/app-rs dev [app]; total=1 unknown=-"},
		"by repository":             {env: e, key: url.PathEscape(rc.Entry.Repository), want: "shop/app ReplicaSet/app-rs dev [app]; total=1 unknown=-"},
		"not synced":                {env: e, key: rc.Entry.Digest, err: inventory.ErrNotSynced, want: "total=0 unknown=the inventory of running pods is not synced with the cluster yet (or lost its watch); ask again"},
		"continuous validation off": {env: off, key: rc.Entry.Digest, want: "total=0 unknown=continuous validation is off (continuousValidation.enabled), so stagegate does not know what runs"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			inv.mu.Lock()
			inv.err = tc.err
			inv.mu.Unlock()
			if got := get(t, tc.env, tc.key).String(); got != tc.want {
				t.Errorf("running\n got %s\nwant %s", got, tc.want)
			}
		})
	}
	if !slices.Contains(inv.asked[0], rc.Entry.Digest) {
		t.Errorf("asked for %v, want the digest %s", inv.asked[0], rc.Entry.Digest)
	}
}

// TestRevocationRunning: the revocation answer lists the pods it affects,
// in its stage, and is still a receipt that verifies.
func TestRevocationRunning(t *testing.T) {
	inv := &fakeInventory{pods: map[string][]inventory.RunningPod{}}
	// The security team may revoke in every stage, which "*" needs.
	security := func(c *config.Config) { c.SecurityGroups = []string{"security"} }
	e := newEnvWith(t, security, policies.FS, api.WithInventory(inv))
	code, body := e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Image, "dev"))
	if code != http.StatusCreated {
		t.Fatalf("promote: %d %s", code, body)
	}
	var pr ledger.Receipt
	_ = json.Unmarshal(body, &pr)
	inv.pods[pr.Entry.Digest] = []inventory.RunningPod{pod("shop", "app", "dev")}
	inv.pods[platformDigest] = []inventory.RunningPod{pod("shop", "arm", "dev")}
	code, body = e.post(t, pipelineToken, "/v1/revocations",
		fmt.Sprintf(`{"digest":%q,"stage":"dev","reason":"CVE-2026-0015"}`, pr.Entry.Digest))
	if code != http.StatusCreated {
		t.Fatalf("revoke: %d %s", code, body)
	}
	var b runningBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "shop/app ReplicaSet/app-rs dev [app]; shop/arm ReplicaSet/arm-rs dev [app]; total=2 unknown=-"; got != want {
		t.Errorf("running\n got %s\nwant %s", got, want)
	}
	if got := inv.stages[len(inv.stages)-1]; got != "dev" {
		t.Errorf("asked for the pods of stage %q, want dev", got)
	}
	var rc ledger.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		t.Fatal(err)
	}
	lv, _ := ledgertestVerifier(e)
	if err := ledger.VerifyReceipt(rc, lv, signing.CheckEntry(e.verifier)); err != nil || rc.Entry.Kind != ledger.KindRevocation {
		t.Fatalf("the revocation answer is no receipt that verifies: %v (%s)", err, rc.Entry.Kind)
	}
	// "*" reaches every stage. (Another digest: promoting the revoked one
	// again would need an override of its revocation.)
	code, body = e.post(t, pipelineToken, "/v1/promotions", promoteBody(e.sample.Index, "dev"))
	if code != http.StatusCreated {
		t.Fatalf("promote the index: %d %s", code, body)
	}
	var ir ledger.Receipt
	_ = json.Unmarshal(body, &ir)
	if code, body = e.post(t, aliceToken, "/v1/revocations",
		fmt.Sprintf(`{"digest":%q,"stage":"*","reason":"CVE-2026-0016"}`, ir.Entry.Digest)); code != http.StatusCreated {
		t.Fatalf("revoke *: %d %s", code, body)
	}
	if got := inv.stages[len(inv.stages)-1]; got != "" {
		t.Errorf("revoking * asked for the pods of stage %q, want every stage", got)
	}
}

// TestViolations: GET /v1/violations pages what the inventory holds, asks
// for readers' tokens, refuses bad parameters with a 400, answers 503 while
// the inventory is not synced and 404 without continuous validation.
func TestViolations(t *testing.T) {
	idx := uint64(4)
	inv := &fakeInventory{
		page: []inventory.Violation{{Namespace: "shop", Pod: "app", UID: "u1", Stage: "prod", Image: "r/app@sha256:x", Digest: "sha256:x",
			Reason: inventory.ReasonRevoked, Message: "revoked", LedgerIndex: idx, HasLedgerIndex: true,
			Since: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Owner: corev1.ObjectReference{Kind: "ReplicaSet", Name: "app-5d8f"}},
			// A GitOps object says its kind.
			{Namespace: "shop", Pod: "cfg", Kind: "OCIRepository", APIVersion: "source.toolkit.fluxcd.io/v1", UID: "u2", Stage: "prod",
				Image: "r/cfg@sha256:y", Digest: "sha256:y", Reason: inventory.ReasonNotPromoted,
				Since: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC), Owner: corev1.ObjectReference{Kind: "OCIRepository", Name: "cfg"}}},
		next: "shop/OCIRepository/cfg",
	}
	e := newEnv(t, api.WithInventory(inv))
	off := newEnv(t)

	code, body := e.get(t, outsiderToken, "/v1/violations?stage=prod&namespace=shop&limit=1&after=a/b")
	if code != http.StatusOK {
		t.Fatalf("violations: %d %s", code, body)
	}
	want := `{"violations":[{"namespace":"shop","pod":"app","owner":"ReplicaSet/app-5d8f","stage":"prod","image":"r/app@sha256:x","digest":"sha256:x","reason":"revoked","message":"revoked","ledgerIndex":4,"since":"2026-12-01T12:00:00Z","kind":"Pod"},` +
		`{"namespace":"shop","pod":"cfg","kind":"OCIRepository","owner":"OCIRepository/cfg","stage":"prod","image":"r/cfg@sha256:y","digest":"sha256:y","reason":"not promoted","since":"2026-12-01T12:00:00Z"}],"next":"shop/OCIRepository/cfg"}`
	var got, wantV any
	_ = json.Unmarshal(body, &got)
	_ = json.Unmarshal([]byte(want), &wantV)
	if g, w := mustMarshal(got), mustMarshal(wantV); g != w {
		t.Errorf("answer\n got %s\nwant %s", g, w)
	}
	if q := inv.queries[0]; q != (inventory.ViolationQuery{Stage: "prod", Namespace: "shop", After: "a/b", Limit: 1}) {
		t.Errorf("query %+v", q)
	}
	if code, _ := e.get(t, outsiderToken, "/v1/violations"); code != http.StatusOK || inv.queries[1].Limit != 100 {
		t.Errorf("default limit: %d, %+v", code, inv.queries[1])
	}
	asked := len(inv.queries)
	for name, tc := range map[string]struct {
		env   *env
		token string
		query string
		code  int
		msg   string
	}{
		"no token":       {env: e, query: "", code: http.StatusUnauthorized},
		"limit 0":        {env: e, token: outsiderToken, query: "?limit=0", code: http.StatusBadRequest, msg: "limit must be between 1 and 1000"},
		"limit too high": {env: e, token: outsiderToken, query: "?limit=1001", code: http.StatusBadRequest, msg: "limit must be between 1 and 1000"},
		"limit negative": {env: e, token: outsiderToken, query: "?limit=-1", code: http.StatusBadRequest, msg: "limit must be a non-negative integer"},
		"bad after":      {env: e, token: outsiderToken, query: "?after=shop", code: http.StatusBadRequest, msg: "after must be"},
		"long namespace": {env: e, token: outsiderToken, query: "?namespace=" + strings.Repeat("n", 254), code: http.StatusBadRequest, msg: "namespace is longer than 253 bytes"},
		"off":            {env: off, token: outsiderToken, query: "", code: http.StatusNotFound, msg: "continuous validation is off"},
	} {
		t.Run(name, func(t *testing.T) {
			code, body := tc.env.get(t, tc.token, "/v1/violations"+tc.query)
			if code != tc.code || !strings.Contains(string(body), tc.msg) {
				t.Errorf("%d %s, want %d with %q", code, body, tc.code, tc.msg)
			}
		})
	}
	if len(inv.queries) != asked {
		t.Errorf("refused requests reached the inventory: %+v", inv.queries[asked:])
	}
	t.Run("not synced", func(t *testing.T) {
		inv.mu.Lock()
		inv.err = inventory.ErrNotSynced
		inv.mu.Unlock()
		code, body := e.get(t, outsiderToken, "/v1/violations")
		if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "not synced") {
			t.Errorf("%d %s, want 503 naming the unsynced inventory", code, body)
		}
	})
	t.Run("wrong method", func(t *testing.T) {
		code, body := e.post(t, outsiderToken, "/v1/violations", "{}")
		if code != http.StatusMethodNotAllowed || !strings.Contains(string(body), "use GET") {
			t.Errorf("%d %s, want 405", code, body)
		}
	})
}

func mustMarshal(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
