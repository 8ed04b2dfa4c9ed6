package policy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stagegate/stagegate/policies"
)

const (
	digestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	digestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
	slsa    = "https://slsa.dev/provenance/v1"
)

// testConfig is the default config of the brief, as the config layer builds it.
func testConfig() map[string]any {
	stage := func(group string, soak int, breakGlass, allowTags bool) map[string]any {
		return map[string]any{"groups": []string{group}, "minSoakSeconds": soak, "mode": "enforce", "breakGlass": breakGlass, "allowTags": allowTags}
	}
	return map[string]any{
		"stages": []string{"dev", "test", "stage", "prod"},
		"stage": map[string]any{
			"dev":   stage("pipeline", 0, true, true),
			"test":  stage("pipeline", 0, true, true),
			"stage": stage("release", 3600, true, true),
			"prod":  stage("release", 86400, false, false),
		},
		"requiredEvidence": map[string]any{"prod": []string{slsa}},
	}
}

func newTestEngine(t testing.TB, opts ...Option) *Engine {
	t.Helper()
	e, err := New(context.Background(), policies.FS, testConfig(), opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func active(at string) StageState {
	return StageState{Promoted: true, PromotedAt: at, PromotedBy: "ci"}
}

func promotionInput(stage string, groups []string, states map[string]StageState) PromotionInput {
	return PromotionInput{
		Image: Image{
			Reference:  "reg.example/app:1.0",
			Repository: "reg.example/app",
			Tag:        "1.0",
			Digest:     digestA,
		},
		Stage:            stage,
		Requester:        Identity{Subject: "alice", Groups: groups, Method: "token"},
		Reason:           "release 1.0",
		VerifiedEvidence: map[string]any{slsa: map[string]any{"buildType": "x"}},
		States:           states,
		Now:              "2025-06-02T12:00:00Z",
	}
}

func TestPromotion(t *testing.T) {
	e := newTestEngine(t)
	img := "reg.example/app@" + digestA
	noEvidence := promotionInput("prod", []string{"release"}, map[string]StageState{"stage": active("2025-06-01T00:00:00Z")})
	noEvidence.VerifiedEvidence = nil

	tests := map[string]struct {
		in   PromotionInput
		want []string
	}{
		"first stage needs no previous stage": {
			in: promotionInput("dev", []string{"pipeline"}, nil),
		},
		"next stage after previous": {
			in: promotionInput("test", []string{"pipeline"}, map[string]StageState{"dev": active("2025-06-02T11:59:59Z")}),
		},
		"prod after soak with evidence": {
			in: promotionInput("prod", []string{"release"}, map[string]StageState{"stage": active("2025-06-01T12:00:00Z")}),
		},
		"unknown stage": {
			in:   promotionInput("qa", []string{"pipeline"}, nil),
			want: []string{`stage "qa" is not a known stage: use one of "dev", "test", "stage", "prod"`},
		},
		"requester not in group": {
			in:   promotionInput("dev", []string{"devs"}, nil),
			want: []string{`requester "alice" (groups "devs") may not promote to stage "dev": ask a member of "pipeline", or get added to one of these groups`},
		},
		"requester without groups": {
			in:   promotionInput("dev", nil, nil),
			want: []string{`requester "alice" (groups ) may not promote to stage "dev": ask a member of "pipeline", or get added to one of these groups`},
		},
		"skipping a stage": {
			in:   promotionInput("stage", []string{"release"}, map[string]StageState{"dev": active("2025-01-01T00:00:00Z")}),
			want: []string{`image ` + img + ` is not promoted to stage "test", which comes before "stage": promote to test first`},
		},
		"previous stage revoked": {
			in: promotionInput("test", []string{"pipeline"}, map[string]StageState{"dev": {
				Promoted: true, PromotedAt: "2025-01-01T00:00:00Z", Revoked: true, RevokedAt: "2025-05-01T00:00:00Z", RevokedBy: "sec", Reason: "CVE-2025-1",
			}}),
			want: []string{`image ` + img + ` was revoked from stage "dev" at 2025-05-01T00:00:00Z by sec (CVE-2025-1): it must be active in "dev" before promotion to "test"; promote it to dev again first`},
		},
		"re-promotion after revocation in target": {
			in: promotionInput("test", []string{"pipeline"}, map[string]StageState{
				"dev":  active("2025-06-01T00:00:00Z"),
				"test": {Promoted: true, Revoked: true},
			}),
		},
		"soak not met": {
			in:   promotionInput("stage", []string{"release"}, map[string]StageState{"test": active("2025-06-02T11:30:00Z")}),
			want: []string{`image ` + img + ` must soak in stage "test" for 1h0m0s before promotion to "stage": retry in 30m0s (at 2025-06-02T12:30:00Z)`},
		},
		"soak exactly met": {
			in: promotionInput("stage", []string{"release"}, map[string]StageState{"test": active("2025-06-02T11:00:00Z")}),
		},
		"soak time unreadable": {
			in:   promotionInput("stage", []string{"release"}, map[string]StageState{"test": active("")}),
			want: []string{`cannot tell how long image ` + img + ` has soaked in stage "test" (promotedAt "", now "2025-06-02T12:00:00Z"): both must be RFC 3339 times`},
		},
		"required evidence missing": {
			in:   noEvidence,
			want: []string{`stage "prod" requires verified evidence of predicate type "` + slsa + `" for image ` + img + `: attach a signed attestation of that type to the image (e.g. cosign attest --type ` + slsa + `) and retry`},
		},
		"every violation reported, sorted": {
			in: func() PromotionInput {
				in := promotionInput("prod", []string{"devs"}, nil)
				in.VerifiedEvidence = nil
				return in
			}(),
			want: []string{
				`image ` + img + ` is not promoted to stage "stage", which comes before "prod": promote to stage first`,
				`requester "alice" (groups "devs") may not promote to stage "prod": ask a member of "release", or get added to one of these groups`,
				`stage "prod" requires verified evidence of predicate type "` + slsa + `" for image ` + img + `: attach a signed attestation of that type to the image (e.g. cosign attest --type ` + slsa + `) and retry`,
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := e.Promotion(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("Promotion: %v", err)
			}
			if tt.want == nil {
				tt.want = []string{}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("deny:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func containerImage(name string, pinned bool, state StageState) ContainerImage {
	ref := "reg.example/" + name + ":1.0"
	if pinned {
		ref = "reg.example/" + name + "@" + digestB
	}
	return ContainerImage{
		Container: name,
		Type:      "container",
		Image:     Image{Reference: ref, Repository: "reg.example/" + name, Tag: "1.0", Digest: digestB},
		Pinned:    pinned,
		State:     state,
	}
}

func admissionInput(stage string, images ...ContainerImage) AdmissionInput {
	return AdmissionInput{
		Stage:     stage,
		Operation: "CREATE",
		User:      Identity{Subject: "system:serviceaccount:ci:deployer", Groups: []string{"system:serviceaccounts"}},
		Workload:  Workload{Version: "v1", Kind: "Pod", Namespace: "shop", Name: "app"},
		Images:    images,
	}
}

func TestAdmission(t *testing.T) {
	e := newTestEngine(t)
	promoted := active("2025-06-01T00:00:00Z")
	notPromoted := StageState{}
	failed := containerImage("app", false, notPromoted)
	failed.Digest, failed.Error = "", "registry reg.example unreachable"
	initC := containerImage("setup", true, notPromoted)
	initC.Type = "initContainer"

	tests := map[string]struct {
		in   AdmissionInput
		want AdmissionDecision
	}{
		"pinned and promoted": {
			in:   admissionInput("prod", containerImage("app", true, promoted)),
			want: AdmissionDecision{},
		},
		"not promoted": {
			in: admissionInput("prod", containerImage("app", true, notPromoted)),
			want: AdmissionDecision{Deny: []string{
				`container "app": image "reg.example/app@` + digestB + `" (` + digestB + `) is not promoted to stage "prod"`,
			}},
		},
		"revoked, with when and why": {
			in: admissionInput("stage", containerImage("app", true, StageState{
				Promoted: true, Revoked: true, RevokedAt: "2025-06-02T00:00:00Z", RevokedBy: "sec", Reason: "CVE-2025-1",
			})),
			want: AdmissionDecision{BreakGlassAllowed: true, Deny: []string{
				`container "app": image "reg.example/app@` + digestB + `" (` + digestB + `) was revoked from stage "stage" at 2025-06-02T00:00:00Z by sec: CVE-2025-1`,
			}},
		},
		"digest unknown": {
			in: admissionInput("dev", failed),
			want: AdmissionDecision{BreakGlassAllowed: true, Deny: []string{
				`container "app": image "reg.example/app:1.0": cannot learn its digest: registry reg.example unreachable`,
			}},
		},
		"tag in last stage": {
			in: admissionInput("prod", containerImage("app", false, promoted)),
			want: AdmissionDecision{Deny: []string{
				`container "app": image "reg.example/app:1.0" is referenced by tag, which stage "prod" does not allow: pin by digest (reg.example/app@` + digestB + `)`,
			}},
		},
		"tag warned where allowed": {
			in: admissionInput("test", containerImage("app", false, promoted)),
			want: AdmissionDecision{BreakGlassAllowed: true, Warn: []string{
				`container "app": image "reg.example/app:1.0" is referenced by tag and resolved to ` + digestB + `; a tag can move, pin by digest (reg.example/app@` + digestB + `)`,
			}},
		},
		"init container named by type": {
			in: admissionInput("dev", initC, containerImage("app", true, promoted)),
			want: AdmissionDecision{BreakGlassAllowed: true, Deny: []string{
				`initContainer "setup": image "reg.example/setup@` + digestB + `" (` + digestB + `) is not promoted to stage "dev"`,
			}},
		},
		"unknown stage": {
			in: admissionInput("qa", containerImage("app", true, promoted)),
			want: AdmissionDecision{Deny: []string{
				`stage "qa" is not a known stage (known: dev, test, stage, prod): label the namespace or pod with one of them`,
			}},
		},
		"no images": {
			in:   admissionInput("dev"),
			want: AdmissionDecision{BreakGlassAllowed: true},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := e.Admission(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("Admission: %v", err)
			}
			if tt.want.Deny == nil {
				tt.want.Deny = []string{}
			}
			if tt.want.Warn == nil {
				tt.want.Warn = []string{}
			}
			if !slices.Equal(got.Deny, tt.want.Deny) {
				t.Errorf("deny:\n got %q\nwant %q", got.Deny, tt.want.Deny)
			}
			if !slices.Equal(got.Warn, tt.want.Warn) {
				t.Errorf("warn:\n got %q\nwant %q", got.Warn, tt.want.Warn)
			}
			if got.BreakGlassAllowed != tt.want.BreakGlassAllowed {
				t.Errorf("break glass allowed = %v, want %v", got.BreakGlassAllowed, tt.want.BreakGlassAllowed)
			}
		})
	}
}

const minimalPolicy = `package stagegate.promotion

deny contains "no" if input.stage == "prod"
`

const minimalAdmission = `package stagegate.admission

deny contains "no" if input.stage == "prod"
`

func TestNewErrors(t *testing.T) {
	tests := map[string]struct {
		fsys    fstest.MapFS
		wantErr error
		wantMsg string
	}{
		"parse error names file and line": {
			fsys: fstest.MapFS{
				"promotion.rego": {Data: []byte(minimalPolicy)},
				"admission.rego": {Data: []byte("package stagegate.admission\n\ndeny contains msg if {\n\tmsg := \n}\n")},
			},
			wantErr: ErrCompile,
			wantMsg: "admission.rego:5: rego_parse_error",
		},
		"compile error names file and line": {
			fsys: fstest.MapFS{
				"promotion.rego": {Data: []byte(minimalPolicy + "\ndeny contains x if {\n\tx := y\n}\n")},
				"admission.rego": {Data: []byte(minimalAdmission)},
			},
			wantErr: ErrCompile,
			wantMsg: "promotion.rego:6: rego_unsafe_var_error: var y is unsafe",
		},
		"rule shadowing the config": {
			fsys: fstest.MapFS{
				"promotion.rego": {Data: []byte(minimalPolicy)},
				"admission.rego": {Data: []byte(minimalAdmission)},
				"config.rego":    {Data: []byte("package stagegate\n\nconfig := {}\n")},
			},
			wantErr: ErrCompile,
			wantMsg: "config.rego:3: rego_compile_error: conflicting rule for data path stagegate/config found",
		},
		"missing admission package": {
			fsys:    fstest.MapFS{"promotion.rego": {Data: []byte(minimalPolicy)}},
			wantErr: ErrMissingRule,
			wantMsg: "data.stagegate.admission.deny",
		},
		"only tests": {
			fsys:    fstest.MapFS{"promotion_test.rego": {Data: []byte(minimalPolicy)}},
			wantErr: ErrNoPolicies,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := New(context.Background(), tt.fsys, testConfig())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("New error = %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("New error = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestNewIgnoresTestFilesAndSubdirectories(t *testing.T) {
	fsys := fstest.MapFS{
		"promotion.rego":      {Data: []byte(minimalPolicy)},
		"admission.rego":      {Data: []byte(minimalAdmission)},
		"broken_test.rego":    {Data: []byte("this is not rego")},
		"vendor/broken.rego":  {Data: []byte("this is not rego")},
		"README.md":           {Data: []byte("# not rego")},
		"promotion.rego.orig": {Data: []byte("this is not rego")},
	}
	e, err := New(context.Background(), fsys, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// A policy without warn or break_glass_allowed still yields a decision.
	d, err := e.Admission(context.Background(), AdmissionInput{Stage: "prod"})
	if err != nil {
		t.Fatalf("Admission: %v", err)
	}
	if !slices.Equal(d.Deny, []string{"no"}) || len(d.Warn) != 0 || d.BreakGlassAllowed {
		t.Errorf("decision = %+v, want deny [no] only", d)
	}
}

func TestDigest(t *testing.T) {
	ctx := context.Background()
	base := newTestEngine(t)
	if !regexp.MustCompile(`^sha256:[0-9a-f]{64}$`).MatchString(base.Digest()) {
		t.Fatalf("Digest() = %q, want sha256:<64 hex>", base.Digest())
	}

	// The same config built differently (float vs int, typed slices) hashes
	// the same: the digest covers canonical JSON.
	same := testConfig()
	same["stages"] = []any{"dev", "test", "stage", "prod"}
	same["stage"].(map[string]any)["prod"].(map[string]any)["minSoakSeconds"] = float64(86400)
	changed := testConfig()
	changed["stage"].(map[string]any)["prod"].(map[string]any)["minSoakSeconds"] = 3600
	policy := fstest.MapFS{}
	for _, name := range []string{"promotion.rego", "admission.rego"} {
		b, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		policy[name] = &fstest.MapFile{Data: b}
	}
	edited := fstest.MapFS{"promotion.rego": policy["promotion.rego"], "admission.rego": {Data: append(bytes.Clone(policy["admission.rego"].Data), "\n# edited\n"...)}}

	tests := map[string]struct {
		fsys     fstest.MapFS
		config   map[string]any
		wantSame bool
	}{
		"same policies and config":   {fsys: policy, config: testConfig(), wantSame: true},
		"equal config, other types":  {fsys: policy, config: same, wantSame: true},
		"config changed":             {fsys: policy, config: changed},
		"policy changed":             {fsys: edited, config: testConfig()},
		"no config":                  {fsys: policy, config: nil},
		"tests do not count":         {fsys: withFile(policy, "x_test.rego", "package x_test\n"), config: testConfig(), wantSame: true},
		"extra policy file is count": {fsys: withFile(policy, "extra.rego", "package extra\n"), config: testConfig()},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			e, err := New(ctx, tt.fsys, tt.config)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if got := e.Digest() == base.Digest(); got != tt.wantSame {
				t.Errorf("Digest() = %s, base %s: same = %v, want %v", e.Digest(), base.Digest(), got, tt.wantSame)
			}
		})
	}
}

func withFile(fsys fstest.MapFS, name, content string) fstest.MapFS {
	out := fstest.MapFS{name: {Data: []byte(content)}}
	for k, v := range fsys {
		out[k] = v
	}
	return out
}

func TestPrintGoesToLogger(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	fsys := fstest.MapFS{
		"promotion.rego": {Data: []byte(minimalPolicy)},
		"admission.rego": {Data: []byte(minimalAdmission + "\nwarn contains \"w\" if {\n\tprint(\"stage is\", input.stage)\n}\n")},
	}
	e, err := New(context.Background(), fsys, nil, WithLogger(logger))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if _, err := e.Admission(context.Background(), AdmissionInput{Stage: "dev"}); err != nil {
		t.Fatalf("Admission: %v", err)
	}
	if !strings.Contains(buf.String(), `message="stage is dev"`) || !strings.Contains(buf.String(), "admission.rego:6") {
		t.Errorf("log = %q, want the print output with its location", buf.String())
	}
}

func TestEvalErrorFailsClosed(t *testing.T) {
	fsys := fstest.MapFS{
		"promotion.rego": {Data: []byte(minimalPolicy + "\np := 1 if input.stage\n\np := 2 if input.stage\n\ndeny contains \"conflict\" if p\n")},
		"admission.rego": {Data: []byte(minimalAdmission)},
	}
	e, err := New(context.Background(), fsys, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Two values for one complete rule is an eval error; the engine must
	// report it rather than allow.
	got, err := e.Promotion(context.Background(), PromotionInput{Stage: "dev"})
	if !errors.Is(err, ErrEval) {
		t.Fatalf("Promotion = %q, %v; want ErrEval", got, err)
	}
}

func TestConcurrentEvaluation(t *testing.T) {
	e := newTestEngine(t)
	in := admissionInput("prod", containerImage("app", true, StageState{}))
	want := `container "app": image "reg.example/app@` + digestB + `" (` + digestB + `) is not promoted to stage "prod"`
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for range 20 {
				d, err := e.Admission(context.Background(), in)
				if err == nil && !slices.Equal(d.Deny, []string{want}) {
					err = fmt.Errorf("deny = %q", d.Deny)
				}
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
