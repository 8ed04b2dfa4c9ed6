package admission

import (
	"context"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
)

const (
	imgA = "registry.example.com/shop/web@" + digestA // promoted to prod
	imgB = "registry.example.com/shop/api@" + digestB // revoked in prod
	imgC = "registry.example.com/shop/db:15"          // tag → digestC, promoted to prod
)

var promotedAt = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testStates() *fakeStates {
	return &fakeStates{states: map[[2]string]ledger.State{
		{digestA, "prod"}: {Digest: digestA, Stage: "prod", Promoted: true, PromotedAt: promotedAt, PromotedBy: "ci"},
		{digestB, "prod"}: {Digest: digestB, Stage: "prod", Promoted: true, Revoked: true, RevokedBy: "sec", RevokeReason: "CVE"},
		{digestC, "prod"}: {Digest: digestC, Stage: "prod", Promoted: true, Labels: map[string]string{"org.opencontainers.image.version": "15"}},
	}}
}

func testResolver() *fakeResolver {
	return &fakeResolver{digests: map[string]string{"registry.example.com/shop/db:15": digestC}}
}

// reviewFixture holds the fakes of one review test.
type reviewFixture struct {
	states   *fakeStates
	policy   *fakePolicy
	resolver *fakeResolver
	recorder *fakeRecorder
	metrics  *fakeMetrics
}

func TestReview(t *testing.T) {
	bg := map[string]string{BreakGlassAnnotation: "INC-7"}
	tests := map[string]struct {
		stage   string
		req     func(t *testing.T) *admissionv1.AdmissionRequest
		opts    func(f *reviewFixture) []Option
		prepare func(f *reviewFixture)

		wantAllowed     bool
		wantCode        int32
		wantMsg         []string // substrings of the status message
		wantWarnings    []string // substrings, each must be in some warning
		wantAnnotations map[string]string
		wantRecorded    int
		wantPolicyCalls int
		wantMetric      string
	}{
		"a foreign promotion counts while its source is fresh": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			opts: func(f *reviewFixture) []Option {
				st := f.states.states[[2]string{digestA, "prod"}]
				st.Foreign = true
				f.states.states[[2]string{digestA, "prod"}] = st
				return []Option{WithFallback(&fakeFallback{})}
			},
			wantAllowed: true, wantPolicyCalls: 1, wantMetric: "prod:allowed",
		},
		"a foreign promotion of a stale source is denied whatever the policy says": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			opts: func(f *reviewFixture) []Option {
				st := f.states.states[[2]string{digestA, "prod"}]
				st.Foreign = true
				f.states.states[[2]string{digestA, "prod"}] = st
				return []Option{WithFallback(&fakeFallback{stale: errors.New("the newest revocation list is 2h old")})}
			},
			wantCode:        http.StatusForbidden,
			wantMsg:         []string{`container "c0": image "` + imgA + `" (` + digestA + `) was promoted to "prod" by another stagegate, through the registry, and the newest revocation list is 2h old`},
			wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"a local promotion does not ask for freshness": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			opts: func(f *reviewFixture) []Option {
				return []Option{WithFallback(&fakeFallback{stale: errors.New("stale")})}
			},
			wantAllowed: true, wantPolicyCalls: 1, wantMetric: "prod:allowed",
		},
		"promoted images are allowed": {
			req:         func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA, imgC) },
			wantAllowed: true, wantPolicyCalls: 1, wantMetric: "prod:allowed",
		},
		"policy warnings reach the client": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			prepare: func(f *reviewFixture) {
				f.policy.decide = func(policy.AdmissionInput) (policy.AdmissionDecision, error) {
					return policy.AdmissionDecision{Warn: []string{"image tag latest is discouraged"}}, nil
				}
			},
			wantAllowed: true, wantWarnings: []string{"latest is discouraged"}, wantPolicyCalls: 1, wantMetric: "prod:allowed",
		},
		"enforce denies with every reason": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, nil, imgA, imgB, "nginx@"+digestD)
			},
			wantCode: http.StatusForbidden,
			wantMsg: []string{`shop/Pod/web in stage "prod"`, "image " + imgB + " is not promoted to prod",
				"; image nginx@" + digestD + " is not promoted to prod"},
			wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"warn mode allows with the reasons as warnings": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgB) },
			opts:            func(*reviewFixture) []Option { return []Option{WithModes(map[string]Mode{"prod": ModeWarn})} },
			wantAllowed:     true,
			wantWarnings:    []string{"image " + imgB + " is not promoted to prod"},
			wantPolicyCalls: 1, wantMetric: "prod:warned",
		},
		"audit mode allows silently and counts": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgB) },
			opts:            func(*reviewFixture) []Option { return []Option{WithModes(map[string]Mode{"prod": ModeAudit})} },
			wantAllowed:     true,
			wantPolicyCalls: 1, wantMetric: "prod:audited",
		},
		"unrecognised mode enforces": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgB) },
			opts:            func(*reviewFixture) []Option { return []Option{WithModes(map[string]Mode{"prod": "Warn "})} },
			wantCode:        http.StatusForbidden,
			wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"break-glass allowed is recorded and admitted": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, bg, imgB) },
			prepare: func(f *reviewFixture) {
				f.policy.decide = func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
					return policy.AdmissionDecision{Deny: []string{"revoked: " + in.Images[0].State.Reason}, BreakGlassAllowed: in.BreakGlass == "INC-7"}, nil
				}
			},
			wantAllowed:     true,
			wantWarnings:    []string{"break-glass: admitted despite: revoked: CVE"},
			wantAnnotations: map[string]string{AuditBreakGlass: "INC-7", AuditLedgerIndex: "42"},
			wantRecorded:    1, wantPolicyCalls: 1, wantMetric: "prod:break-glass",
		},
		"break-glass not allowed by policy is denied": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, bg, imgB) },
			wantCode:        http.StatusForbidden,
			wantMsg:         []string{"is not promoted to prod", "break-glass annotation is not allowed"},
			wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"break-glass in a dry run is not recorded": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, bg, imgB)
				r.DryRun = new(true)
				return r
			},
			prepare:         allowBreakGlass,
			wantAllowed:     true,
			wantWarnings:    []string{"break-glass: admitted despite"},
			wantAnnotations: map[string]string{AuditBreakGlass: "INC-7"},
			wantPolicyCalls: 1, wantMetric: "prod:break-glass",
		},
		"break-glass whose recording fails is refused": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, bg, imgB) },
			prepare: func(f *reviewFixture) {
				allowBreakGlass(f)
				f.recorder.err = errors.New("ledger: disk full")
			},
			wantCode:        http.StatusInternalServerError,
			wantMsg:         []string{"could not record the break-glass", "disk full", "shop/Pod/web"},
			wantPolicyCalls: 1, wantMetric: "prod:error",
		},
		"break-glass without a recorder is refused": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, bg, imgB) },
			opts:            func(*reviewFixture) []Option { return nil },
			prepare:         allowBreakGlass,
			wantCode:        http.StatusInternalServerError,
			wantMsg:         []string{"no ledger recorder configured"},
			wantPolicyCalls: 1, wantMetric: "prod:error",
		},
		"resolver error reaches the policy and denies": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, nil, "registry.example.com/shop/db:16")
			},
			wantCode:        http.StatusForbidden,
			wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"ledger error fails closed naming the image": {
			req:             func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			prepare:         func(f *reviewFixture) { f.states.err = errors.New("bbolt: database not open") },
			wantCode:        http.StatusInternalServerError,
			wantMsg:         []string{"stagegate could not decide", imgA, `"prod"`, "database not open"},
			wantPolicyCalls: 0, wantMetric: "prod:error",
		},
		"policy error fails closed": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			prepare: func(f *reviewFixture) {
				f.policy.decide = func(policy.AdmissionInput) (policy.AdmissionDecision, error) {
					return policy.AdmissionDecision{}, errors.New("rego: undefined")
				}
			},
			wantCode:        http.StatusInternalServerError,
			wantMsg:         []string{"stagegate could not decide", "shop/Pod/web", `"prod"`, "rego: undefined"},
			wantPolicyCalls: 1, wantMetric: "prod:error",
		},
		"unknown stage fails closed": {
			stage:      "qa",
			req:        func(t *testing.T) *admissionv1.AdmissionRequest { return podRequest(t, nil, imgA) },
			wantCode:   http.StatusForbidden,
			wantMsg:    []string{`unknown stage "qa"`, "dev, test, stage, prod"},
			wantMetric: "unknown:denied",
		},
		"delete is allowed without a policy call": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, nil, imgB)
				r.Operation = admissionv1.Delete
				return r
			},
			wantAllowed: true, wantMetric: "prod:allowed",
		},
		"connect is allowed": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, nil, imgB)
				r.Operation, r.SubResource = admissionv1.Connect, "exec"
				return r
			},
			wantAllowed: true, wantMetric: "prod:allowed",
		},
		"object without images is allowed": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return requestFor(t, fixtureJSON(t, "replicationcontroller-notemplate.yaml"), admissionv1.Create, "")
			},
			wantAllowed: true, wantMetric: "prod:allowed",
		},
		"an update of an object being deleted is allowed": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, nil, imgB)
				r.Operation = admissionv1.Update
				r.Object.Raw = []byte(strings.Replace(string(r.Object.Raw), `"name":"web"`, `"name":"web","deletionTimestamp":"2026-12-02T00:00:00Z"`, 1))
				return r
			},
			wantAllowed: true, wantMetric: "prod:allowed",
		},
		"a create claiming deletion is still checked": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				r := podRequest(t, nil, imgB)
				r.Object.Raw = []byte(strings.Replace(string(r.Object.Raw), `"name":"web"`, `"name":"web","deletionTimestamp":"2026-12-02T00:00:00Z"`, 1))
				return r
			},
			wantCode: http.StatusForbidden, wantPolicyCalls: 1, wantMetric: "prod:denied",
		},
		"kind without a pod spec is allowed": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return requestFor(t, fixtureJSON(t, "service.yaml"), admissionv1.Create, "")
			},
			wantAllowed: true, wantMetric: "prod:allowed",
		},
		"unreadable pod spec of a custom kind fails closed with 400": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return requestFor(t, []byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"template":{"spec":{"containers":"nginx"}}}}`), admissionv1.Create, "")
			},
			wantCode:   http.StatusBadRequest,
			wantMsg:    []string{"cannot read the pod spec", "example.com/v1/Widget", "/spec/template/spec", "--skip-resource widgets.example.com"},
			wantMetric: "prod:error",
		},
		"unknown stage with an unreadable object is refused as unknown stage": {
			stage: "Prod",
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return requestFor(t, []byte(`{"apiVersion":"example.com/v1","kind":"Widget","metadata":{"name":"w","namespace":"shop"},"spec":{"containers":3}}`), admissionv1.Create, "")
			},
			wantCode:   http.StatusForbidden,
			wantMsg:    []string{`unknown stage "Prod"`},
			wantMetric: "unknown:denied",
		},
		"too many images are refused before any lookup": {
			req: func(t *testing.T) *admissionv1.AdmissionRequest {
				return podRequest(t, nil, imgA, imgA, imgC)
			},
			opts:       func(*reviewFixture) []Option { return []Option{WithMaxImages(2)} },
			wantCode:   http.StatusForbidden,
			wantMsg:    []string{"too many images", "names 3 images", "at most 2"},
			wantMetric: "prod:denied",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := &reviewFixture{states: testStates(), policy: &fakePolicy{}, resolver: testResolver(), recorder: &fakeRecorder{index: 42}, metrics: &fakeMetrics{}}
			if tc.prepare != nil {
				tc.prepare(f)
			}
			opts := []Option{WithResolver(f.resolver), WithRecorder(f.recorder)}
			if tc.opts != nil {
				opts = tc.opts(f)
			}
			opts = append(opts, WithStages([]string{"dev", "test", "stage", "prod"}), WithMetrics(f.metrics))
			r := NewReviewer(f.states, f.policy, opts...)
			stage := tc.stage
			if stage == "" {
				stage = "prod"
			}
			req := tc.req(t)
			resp := r.Review(context.Background(), stage, req)

			if resp.UID != req.UID {
				t.Errorf("UID = %q, want %q", resp.UID, req.UID)
			}
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("Allowed = %v, want %v (result %+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if !tc.wantAllowed {
				if resp.Result == nil || resp.Result.Code != tc.wantCode {
					t.Fatalf("result = %+v, want code %d", resp.Result, tc.wantCode)
				}
				if tc.wantCode == http.StatusForbidden && resp.Result.Reason != metav1.StatusReasonForbidden {
					t.Errorf("reason = %q, want Forbidden", resp.Result.Reason)
				}
				for _, s := range tc.wantMsg {
					if !strings.Contains(resp.Result.Message, s) {
						t.Errorf("message %q does not contain %q", resp.Result.Message, s)
					}
				}
			}
			for _, s := range tc.wantWarnings {
				if !slices.ContainsFunc(resp.Warnings, func(w string) bool { return strings.Contains(w, s) }) {
					t.Errorf("warnings %q do not contain %q", resp.Warnings, s)
				}
			}
			if tc.wantAnnotations != nil && !maps.Equal(resp.AuditAnnotations, tc.wantAnnotations) {
				t.Errorf("audit annotations = %v, want %v", resp.AuditAnnotations, tc.wantAnnotations)
			}
			if tc.wantAnnotations == nil && len(resp.AuditAnnotations) > 0 {
				t.Errorf("unexpected audit annotations %v", resp.AuditAnnotations)
			}
			if len(f.recorder.got) != tc.wantRecorded {
				t.Errorf("recorded %d break-glass entries, want %d", len(f.recorder.got), tc.wantRecorded)
			}
			if f.policy.calls != tc.wantPolicyCalls {
				t.Errorf("policy called %d times, want %d", f.policy.calls, tc.wantPolicyCalls)
			}
			if !slices.Equal(f.metrics.got, []string{tc.wantMetric}) {
				t.Errorf("metrics = %v, want [%s]", f.metrics.got, tc.wantMetric)
			}
		})
	}
}

func allowBreakGlass(f *reviewFixture) {
	f.policy.decide = func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
		return policy.AdmissionDecision{Deny: []string{"not promoted"}, BreakGlassAllowed: true}, nil
	}
}

func TestReviewPolicyInput(t *testing.T) {
	states, pol, res := testStates(), &fakePolicy{}, testResolver()
	rec := &fakeRecorder{index: 9}
	pol.decide = func(policy.AdmissionInput) (policy.AdmissionDecision, error) {
		return policy.AdmissionDecision{Deny: []string{"no"}, BreakGlassAllowed: true}, nil
	}
	r := NewReviewer(states, pol, WithResolver(res), WithRecorder(rec))
	refs := []string{imgA, imgC, imgC, "registry.example.com/shop/db:16", "unreachable.example.com/x:1", "Bad:Ref", "nginx:1.27"}
	req := podRequest(t, map[string]string{BreakGlassAnnotation: "INC-9"}, refs...)
	res.digests["unreachable.example.com/x:1"] = "" // answered, but not a digest
	resp := r.Review(context.Background(), "prod", req)
	if !resp.Allowed {
		t.Fatalf("break-glass not admitted: %+v", resp.Result)
	}
	in := pol.last
	if in.Stage != "prod" || in.Operation != "CREATE" || in.DryRun || in.BreakGlass != "INC-9" {
		t.Errorf("input header = %+v", in)
	}
	if in.User.Subject != "alice" || !slices.Equal(in.User.Groups, []string{"devs"}) {
		t.Errorf("user = %+v", in.User)
	}
	if in.Workload.Kind != "Pod" || in.Workload.Namespace != "shop" || in.Workload.Name != "web" || in.Workload.Version != "v1" {
		t.Errorf("workload = %+v", in.Workload)
	}
	if len(in.Images) != 7 {
		t.Fatalf("got %d images, want 7", len(in.Images))
	}
	want := []struct {
		digest, tag, errSub string
		pinned, promoted    bool
	}{
		{digest: digestA, pinned: true, promoted: true},
		{digest: digestC, tag: "15", promoted: true},
		{digest: digestC, tag: "15", promoted: true},
		{tag: "16", errSub: "registry registry.example.com: manifest unknown"},
		{tag: "1", errSub: "not a sha256 digest"},
		{errSub: "invalid image reference"},
		{tag: "1.27", errSub: "registry index.docker.io"},
	}
	for i, w := range want {
		ci := in.Images[i]
		if ci.Digest != w.digest || ci.Tag != w.tag || ci.Pinned != w.pinned || ci.State.Promoted != w.promoted {
			t.Errorf("image %d = %+v, want %+v", i, ci, w)
		}
		if (w.errSub == "") != (ci.Error == "") || !strings.Contains(ci.Error, w.errSub) {
			t.Errorf("image %d error = %q, want it to contain %q", i, ci.Error, w.errSub)
		}
		if ci.Reference != refs[i] {
			t.Errorf("image %d reference = %q, want %q", i, ci.Reference, refs[i])
		}
	}
	if got := in.Images[0].State.PromotedAt; got != "2026-01-02T03:04:05Z" {
		t.Errorf("promotedAt = %q", got)
	}
	if in.Images[1].Labels["org.opencontainers.image.version"] != "15" {
		t.Errorf("image labels from the ledger missing: %+v", in.Images[1])
	}
	if in.Images[0].Repository != "registry.example.com/shop/web" || in.Images[0].Container != "c0" || in.Images[0].Type != "container" {
		t.Errorf("image 0 = %+v", in.Images[0])
	}
	// imgC twice: one registry call, one ledger read for it.
	if res.calls != 4 {
		t.Errorf("resolver called %d times, want 4", res.calls)
	}
	if states.calls != 2 {
		t.Errorf("ledger read %d times, want 2 (digests A and C)", states.calls)
	}
	if len(rec.got) != 1 {
		t.Fatalf("recorded %d break-glass entries", len(rec.got))
	}
	bg := rec.got[0]
	wantImages := []string{imgA, imgC + "@" + digestC, "registry.example.com/shop/db:16", "unreachable.example.com/x:1", "Bad:Ref", "nginx:1.27"}
	if bg.Stage != "prod" || bg.Workload != "shop/Pod/web" || bg.Justification != "INC-9" || bg.User != "alice" ||
		!slices.Equal(bg.Groups, []string{"devs"}) || !slices.Equal(bg.Images, wantImages) {
		t.Errorf("break-glass = %+v\nwant images %q", bg, wantImages)
	}
}

func TestReviewNoResolver(t *testing.T) {
	pol := &fakePolicy{}
	r := NewReviewer(testStates(), pol)
	resp := r.Review(context.Background(), "anything", podRequest(t, nil, imgC))
	if resp.Allowed {
		t.Fatal("unresolvable tag admitted by the default policy fake")
	}
	if got := pol.last.Images[0].Error; !strings.Contains(got, "not pinned by digest") {
		t.Errorf("error = %q", got)
	}
}

func TestReviewNilRequest(t *testing.T) {
	resp := NewReviewer(testStates(), &fakePolicy{}).Review(context.Background(), "prod", nil)
	if resp.Allowed || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("nil request: %+v", resp)
	}
}

func BenchmarkReview(b *testing.B) {
	r := NewReviewer(testStates(), &fakePolicy{}, WithResolver(testResolver()))
	req := podRequest(b, nil, imgA, imgC, "registry.example.com/shop/web:1@"+digestA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if resp := r.Review(ctx, "prod", req); !resp.Allowed {
			b.Fatal(resp.Result.Message)
		}
	}
}
