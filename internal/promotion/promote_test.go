package promotion_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

const provenance = "https://slsa.dev/provenance/v1"

// TestPromoteRefuses covers every way Promote refuses. Whatever the reason,
// a refused promotion records nothing, and what the caller needs to map the
// error (the sentinel or the *DeniedError) survives the wrapping.
func TestPromoteRefuses(t *testing.T) {
	errPolicy := errors.New("rego: eval_conflict_error")
	errSign := errors.New("kms: key disabled")
	errCopy := errors.New("copy: blob upload refused")
	errEvidence := errors.New("oci: no provenance attestation")
	corrupt := func(d string) func(e *env) {
		return func(e *env) { e.faults.stateErr = map[string]error{d: ledger.ErrCorrupt} }
	}
	mirror := map[string]promotion.StageOptions{"prod": {Attest: true, Target: func(string) string { return repoMirror }}}

	tests := map[string]struct {
		req       promotion.Request
		stageOpts map[string]promotion.StageOptions
		setup     func(e *env)
		// wantIs is matched with errors.Is; with wantDenied the error must
		// be a *DeniedError whose violations contain wantDenied.
		wantIs     error
		wantDenied string
		// wantCalls are the registry calls made before the refusal.
		wantCalls []string
	}{
		"no stage": {
			req:    promotion.Request{Image: refApp},
			wantIs: promotion.ErrInvalid,
		},
		"unknown stage": {
			req:    promotion.Request{Image: refApp, Stage: "qa"},
			wantIs: promotion.ErrInvalid,
		},
		"all stages": {
			// "*" is for revocations only.
			req:    promotion.Request{Image: refApp, Stage: ledger.AllStages},
			wantIs: promotion.ErrInvalid,
		},
		"no image": {
			req:    promotion.Request{Stage: "dev"},
			wantIs: promotion.ErrInvalid,
		},
		"reason too long": {
			req:    promotion.Request{Image: refApp, Stage: "dev", Reason: strings.Repeat("r", 1025)},
			wantIs: promotion.ErrInvalid,
		},
		"reason with a control character": {
			req:    promotion.Request{Image: refApp, Stage: "dev", Reason: "ok\x1b[2Jforged"},
			wantIs: promotion.ErrInvalid,
		},
		"reason with DEL": {
			req:    promotion.Request{Image: refApp, Stage: "dev", Reason: "ok\x7f"},
			wantIs: promotion.ErrInvalid,
		},
		"evidence that is not JSON": {
			req:    promotion.Request{Image: refApp, Stage: "dev", Evidence: map[string]any{"ch": make(chan int)}},
			wantIs: promotion.ErrInvalid,
		},
		"evidence too large": {
			req:    promotion.Request{Image: refApp, Stage: "dev", Evidence: map[string]any{"doc": strings.Repeat("e", 16<<10)}},
			wantIs: promotion.ErrInvalid,
		},
		"image not in the registry": {
			req:    promotion.Request{Image: repoApp + ":missing", Stage: "dev"},
			wantIs: registry.ErrNotFound,
		},
		"registry unreachable": {
			req:    promotion.Request{Image: refApp, Stage: "dev"},
			setup:  func(e *env) { e.resolver.err = registry.ErrUnreachable },
			wantIs: registry.ErrUnreachable,
		},
		"required evidence not verified": {
			req:       promotion.Request{Image: refApp, Stage: "prod"},
			stageOpts: map[string]promotion.StageOptions{"prod": {RequiredEvidence: []string{provenance}}},
			setup:     func(e *env) { e.registry.evidenceErr = errEvidence },
			wantIs:    errEvidence,
			wantCalls: []string{"evidence " + repoApp + "@" + digestApp},
		},
		"state does not decode": {
			req:    promotion.Request{Image: refApp, Stage: "dev"},
			setup:  corrupt(digestApp),
			wantIs: ledger.ErrCorrupt,
		},
		"platform state does not decode": {
			req:    promotion.Request{Image: refIndex, Stage: "dev"},
			setup:  corrupt(p2),
			wantIs: ledger.ErrCorrupt,
		},
		"policy fails": {
			req:    promotion.Request{Image: refApp, Stage: "dev"},
			setup:  func(e *env) { e.policy.set(nil, errPolicy) },
			wantIs: errPolicy,
		},
		"policy denies": {
			req:        promotion.Request{Image: refApp, Stage: "dev"},
			setup:      func(e *env) { e.policy.set([]string{"not from main", "no tests"}, nil) },
			wantDenied: "no tests",
		},
		"policy denies before the copy": {
			req:        promotion.Request{Image: refApp, Stage: "prod"},
			stageOpts:  mirror,
			setup:      func(e *env) { e.policy.set([]string{"soak time"}, nil) },
			wantDenied: "soak time",
		},
		"state does not decode before the copy": {
			req:       promotion.Request{Image: refApp, Stage: "prod"},
			stageOpts: mirror,
			setup:     corrupt(digestApp),
			wantIs:    ledger.ErrCorrupt,
		},
		"copy fails": {
			req:       promotion.Request{Image: refApp, Stage: "prod"},
			stageOpts: mirror,
			setup:     func(e *env) { e.registry.copyErr = errCopy },
			wantIs:    errCopy,
			wantCalls: []string{"copy " + repoApp + "@" + digestApp + " " + repoMirror},
		},
		"statement refused": {
			// Only sha256 subjects are signed (cosign checks no other).
			req: promotion.Request{Image: repoApp + ":sha512", Stage: "dev"},
			setup: func(e *env) {
				e.resolver.images[repoApp+":sha512"] = registry.Resolved{Repository: repoApp, Digest: "sha512:" + strings.Repeat("ab", 64)}
			},
			wantIs: signing.ErrInvalidDigest,
		},
		"signer fails": {
			req:    promotion.Request{Image: refApp, Stage: "dev"},
			setup:  func(e *env) { e.signer.err = errSign },
			wantIs: errSign,
		},
		"ledger refuses the write": {
			req:    promotion.Request{Image: refApp, Stage: "dev"},
			setup:  func(e *env) { e.faults.appendErr = ledger.ErrReadOnly },
			wantIs: ledger.ErrReadOnly,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, tc.stageOpts)
			if tc.setup != nil {
				tc.setup(e)
			}
			tc.req.Requester = ci
			res, err := e.svc.Promote(context.Background(), tc.req)
			if tc.wantDenied != "" {
				var denied *promotion.DeniedError
				if !errors.As(err, &denied) || denied.Stage != tc.req.Stage || !slices.Contains(denied.Violations, tc.wantDenied) {
					t.Fatalf("err = %v, want a denial in %s naming %q", err, tc.req.Stage, tc.wantDenied)
				}
			} else if !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
			var pub *promotion.PublishError
			if errors.As(err, &pub) {
				t.Errorf("a refusal reads as a failed publication: %v", err)
			}
			if res.Created || res.Receipt.Checkpoint != "" {
				t.Errorf("result = %+v, want none", res)
			}
			if n := e.size(t); n != 0 {
				t.Errorf("ledger size = %d after a refused promotion", n)
			}
			if got := e.registry.took(); !sameCalls(got, tc.wantCalls) {
				t.Errorf("registry calls = %s, want %s", callsString(got), callsString(tc.wantCalls))
			}
		})
	}
}

// TestPromoteRecordsSignsAndPublishes follows one promotion with every
// registry option on: evidence verified and handed to the policy, the
// image copied before anything is recorded, the entry signed with what was
// decided, and the attestation and the stage tag published on the source
// and on the copy.
func TestPromoteRecordsSignsAndPublishes(t *testing.T) {
	evidence := map[string]any{provenance: map[string]any{"builder": "ci"}}
	var logs bytes.Buffer
	e := newEnv(t, map[string]promotion.StageOptions{
		"prod": {Attest: true, Tag: "prod", RequiredEvidence: []string{provenance},
			Target: func(repo string) string { return strings.Replace(repo, "reg.example", "mirror.example", 1) }},
	}, promotion.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	// A pipeline's attestation, signed with the evidence key, and one by
	// another key, which does not count.
	for _, s := range []*signing.Signer{signingtest.Signer(t), signingtest.ForeignSigner(t)} {
		builder := "ci"
		if s != signingtest.Signer(t) {
			builder = "rogue"
		}
		st, err := signing.NewStatement(repoApp, digestApp, provenance, map[string]any{"builder": builder})
		if err != nil {
			t.Fatal(err)
		}
		env, err := s.Sign(st)
		if err != nil {
			t.Fatal(err)
		}
		e.registry.envelopes = append(e.registry.envelopes, env)
	}

	res, err := e.svc.Promote(context.Background(), promotion.Request{
		Image: refApp, Stage: "prod", Reason: "release 1.0", Requester: ci,
		Evidence: map[string]any{"build": "https://ci.example/42"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Created || res.Receipt.Checkpoint == "" {
		t.Fatalf("result = %+v, want a new receipt", res)
	}
	ent := res.Receipt.Entry
	if ent.Kind != ledger.KindPromotion || ent.Digest != digestApp || ent.Repository != repoApp || ent.Stage != "prod" ||
		ent.Subject != "ci" || !slices.Equal(ent.Groups, ci.Groups) || ent.Reason != "release 1.0" || !ent.Time.Equal(t0) ||
		!slices.Equal(ent.Copies, []string{repoMirror}) || !maps.Equal(ent.Labels, map[string]string{"team": "shop"}) {
		t.Errorf("entry = %+v", ent)
	}
	if st := e.state(t, digestApp, "prod"); !st.Active() || st.PromotedIndex != ent.Index {
		t.Errorf("state after promotion = %+v", st)
	}

	in := e.policy.last(t)
	if !reflect.DeepEqual(in.VerifiedEvidence, evidence) {
		t.Errorf("verified evidence = %v, want only the evidence key's %v", in.VerifiedEvidence, evidence)
	}
	if in.Image.Reference != refApp || in.Image.Tag != "1.0" || in.Image.Digest != digestApp || in.Stage != "prod" ||
		in.Requester.Subject != "ci" || in.Now != t0.Format(time.RFC3339) || in.VerifiedEvidence[provenance] == nil ||
		in.Evidence["build"] != "https://ci.example/42" {
		t.Errorf("policy input = %+v", in)
	}
	if len(in.States) != len(stages) || in.States["prod"].Promoted {
		t.Errorf("policy states = %+v, want every stage, none promoted", in.States)
	}
	// Asked once before the copy and once in the write transaction.
	if n := e.policy.asked(); n != 2 {
		t.Errorf("policy asked %d times, want 2", n)
	}

	st := e.signer.last(t)
	if st.PredicateType != signing.PromotionPredicateType || subjectOf(st) != repoApp+"@"+digestApp {
		t.Errorf("statement %s about %s", st.PredicateType, subjectOf(st))
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, st, &pred)
	if pred.Stage != "prod" || pred.LedgerIndex != ent.Index || pred.PolicyDigest != fakePolicyDigest || !pred.Time.Equal(t0) ||
		pred.Requester.Subject != "ci" || !slices.Equal(pred.Copies, []string{repoMirror}) || pred.VerifiedEvidence[provenance] == nil {
		t.Errorf("predicate = %+v", pred)
	}

	want := []string{
		"evidence " + repoApp + "@" + digestApp,
		"copy " + repoApp + "@" + digestApp + " " + repoMirror,
		"attach " + repoApp + "@" + digestApp,
		"tag " + repoApp + "@" + digestApp + " prod",
		"attach " + repoMirror + "@" + digestApp,
		"tag " + repoMirror + "@" + digestApp + " prod",
	}
	if got := e.registry.took(); !sameCalls(got, want) {
		t.Errorf("registry calls = %s, want %s", callsString(got), callsString(want))
	}
	if !strings.Contains(logs.String(), "msg=promoted") || !strings.Contains(logs.String(), digestApp) {
		t.Errorf("log = %q, want the promotion", logs.String())
	}
}

// TestPromoteAgain: promoting what is already active answers with the
// existing receipt, writes nothing, and publishes again so that a retry
// repairs a failed publication, copy included. The existing receipt still
// goes only to someone the policy lets promote.
func TestPromoteAgain(t *testing.T) {
	e := newEnv(t, map[string]promotion.StageOptions{
		"prod": {Attest: true, Tag: "prod", Target: func(string) string { return repoMirror }},
	})
	first := e.promote(t, refApp, "prod")
	e.registry.took()

	again := e.promote(t, refApp, "prod")
	if again.Created || again.Receipt.Entry.Index != first.Receipt.Entry.Index || again.Receipt.Checkpoint == "" {
		t.Fatalf("repeat = %+v, want the existing receipt of entry %d", again, first.Receipt.Entry.Index)
	}
	if n := e.size(t); n != 1 {
		t.Errorf("ledger size = %d after a repeat, want 1", n)
	}
	want := []string{
		"copy " + repoApp + "@" + digestApp + " " + repoMirror,
		"attach " + repoApp + "@" + digestApp,
		"tag " + repoApp + "@" + digestApp + " prod",
		"attach " + repoMirror + "@" + digestApp,
		"tag " + repoMirror + "@" + digestApp + " prod",
	}
	if got := e.registry.took(); !sameCalls(got, want) {
		t.Errorf("registry calls on repeat = %s, want %s", callsString(got), callsString(want))
	}
	if in := e.policy.last(t); !in.States["prod"].Promoted || in.States["prod"].PromotedAt != t0.Format(time.RFC3339) ||
		in.States["prod"].PromotedBy != "ci" {
		t.Errorf("policy saw prod as %+v, want promoted at %s by ci", in.States["prod"], t0.Format(time.RFC3339))
	}

	e.policy.set([]string{"not you"}, nil)
	_, err := e.svc.Promote(context.Background(), promotion.Request{Image: refApp, Stage: "prod", Requester: ci})
	var denied *promotion.DeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("repeat by someone the policy denies: %v, want a denial", err)
	}
	if got := e.registry.took(); len(got) != 0 {
		t.Errorf("a denied repeat reached the registry: %s", callsString(got))
	}
}

// TestPromotePublishError is the "502 with receipt" branch: the entry is
// written and its receipt returned, but publishing fails; the error says
// which entry, wraps the registry's error, and a repeat publishes again.
func TestPromotePublishError(t *testing.T) {
	errDown := errors.New("registry: 503 service unavailable")
	tests := map[string]struct {
		attachErr, tagErr map[string]error
		// wantCalls are the calls of the failing promotion: a failed attach
		// skips the tag of that repository, not the other repository.
		wantCalls []string
	}{
		"attach fails": {
			attachErr: map[string]error{repoApp: errDown},
			wantCalls: []string{"attach " + repoApp + "@" + digestApp,
				"attach " + repoMirror + "@" + digestApp, "tag " + repoMirror + "@" + digestApp + " prod"},
		},
		"tag fails": {
			tagErr: map[string]error{repoApp: errDown},
			wantCalls: []string{"attach " + repoApp + "@" + digestApp, "tag " + repoApp + "@" + digestApp + " prod",
				"attach " + repoMirror + "@" + digestApp, "tag " + repoMirror + "@" + digestApp + " prod"},
		},
		"attach to the copy fails": {
			attachErr: map[string]error{repoMirror: errDown},
			wantCalls: []string{"attach " + repoApp + "@" + digestApp, "tag " + repoApp + "@" + digestApp + " prod",
				"attach " + repoMirror + "@" + digestApp},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, map[string]promotion.StageOptions{
				"prod": {Attest: true, Tag: "prod", Target: func(string) string { return repoMirror }},
			})
			e.registry.attachErr, e.registry.tagErr = tc.attachErr, tc.tagErr
			res, err := e.svc.Promote(context.Background(), promotion.Request{Image: refApp, Stage: "prod", Requester: ci})
			var pub *promotion.PublishError
			if !errors.As(err, &pub) || !errors.Is(err, errDown) {
				t.Fatalf("err = %v, want a *PublishError wrapping %v", err, errDown)
			}
			if !res.Created || res.Receipt.Checkpoint == "" || pub.Index != res.Receipt.Entry.Index {
				t.Fatalf("result = %+v, publish error for entry %d: want the new receipt of that entry", res, pub.Index)
			}
			if !strings.Contains(err.Error(), "repeat the request") {
				t.Errorf("message %q does not say how to retry", err)
			}
			if st := e.state(t, digestApp, "prod"); !st.Active() {
				t.Errorf("state = %+v: the promotion must be recorded although publishing failed", st)
			}
			calls := e.registry.took()
			if i := slices.IndexFunc(calls, func(c string) bool { return strings.HasPrefix(c, "attach") }); i < 0 {
				t.Fatalf("registry calls = %s, want publication", callsString(calls))
			}
			if got := calls[1:]; !sameCalls(got, tc.wantCalls) { // calls[0] is the copy
				t.Errorf("registry calls = %s, want %s", callsString(got), callsString(tc.wantCalls))
			}

			e.registry.attachErr, e.registry.tagErr = nil, nil
			again, err := e.svc.Promote(context.Background(), promotion.Request{Image: refApp, Stage: "prod", Requester: ci})
			if err != nil || again.Created || again.Receipt.Entry.Index != res.Receipt.Entry.Index {
				t.Fatalf("retry = %+v, %v: want the existing receipt and no error", again, err)
			}
			if n := e.size(t); n != 1 {
				t.Errorf("ledger size = %d after the retry, want 1", n)
			}
		})
	}
}

// TestPromotePublishesOnlyWhatTheStageAsks: without a registry, or for a
// stage with neither attestation nor tag, nothing reaches the registry.
func TestPromotePublishesOnlyWhatTheStageAsks(t *testing.T) {
	tests := map[string]struct {
		stageOpts map[string]promotion.StageOptions
		want      []string
	}{
		"no registry": {},
		"stage without options": {
			stageOpts: map[string]promotion.StageOptions{"prod": {Attest: true}},
		},
		"tag only": {
			stageOpts: map[string]promotion.StageOptions{"dev": {Tag: "dev"}},
			want:      []string{"tag " + repoApp + "@" + digestApp + " dev"},
		},
		"attestation only": {
			stageOpts: map[string]promotion.StageOptions{"dev": {Attest: true}},
			want:      []string{"attach " + repoApp + "@" + digestApp},
		},
		"evidence only": {
			stageOpts: map[string]promotion.StageOptions{"dev": {RequiredEvidence: []string{provenance}}},
			want:      []string{"evidence " + repoApp + "@" + digestApp},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, tc.stageOpts)
			e.promote(t, refApp, "dev")
			if got := e.registry.took(); !sameCalls(got, tc.want) {
				t.Errorf("registry calls = %s, want %s", callsString(got), callsString(tc.want))
			}
		})
	}
}

// TestPromoteIndexWithRevokedPlatform: promoting an index is refused while
// one of its platforms is revoked by a revocation the promotion would not
// lift (the platform's own, or that of another index containing it), and
// allowed when the index's own revocation is what reached the platform.
func TestPromoteIndexWithRevokedPlatform(t *testing.T) {
	tests := map[string]struct {
		revoke     string // the digest revoked after promoting both indexes
		promote    string // the reference promoted again
		wantDenied string // "" for allowed; else a word of the violation
	}{
		"platform revoked itself": {revoke: p1, promote: refIndex, wantDenied: "revoked it"},
		"platform revoked through the other index": {revoke: digestOther, promote: refIndex,
			wantDenied: "revoked " + digestOther},
		// Revoked itself, the index is put back only by an override.
		"index revoked itself": {revoke: digestIndex, promote: refIndex},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.promote(t, refIndex, "dev")
			e.promote(t, refOther, "dev")
			rv := e.revoke(t, tc.revoke, "dev")
			_, err := e.svc.Promote(context.Background(), promotion.Request{Image: tc.promote, Stage: "dev", Requester: ci,
				OverrideRevocation: true, Reason: "fixed"})
			if tc.wantDenied == "" {
				if err != nil {
					t.Fatalf("promote again: %v", err)
				}
				if st := e.state(t, p1, "dev"); !st.Active() {
					t.Errorf("platform after the index's new promotion: %+v", st)
				}
				return
			}
			var denied *promotion.DeniedError
			if !errors.As(err, &denied) || len(denied.Violations) != 1 || !strings.Contains(denied.Violations[0], p1) ||
				!strings.Contains(denied.Violations[0], tc.wantDenied) || !strings.Contains(denied.Violations[0], "CVE-1") {
				t.Fatalf("err = %v, want one violation naming %s and %q", err, p1, tc.wantDenied)
			}
			if n := e.size(t); n != rv.Receipt.Entry.Index+1 {
				t.Errorf("ledger size = %d, want nothing after the revocation at %d", n, rv.Receipt.Entry.Index)
			}
		})
	}
}

// TestPolicySeesRevocation: the policy reads a revoked stage with who
// revoked it, when and why.
func TestPolicySeesRevocation(t *testing.T) {
	e := newEnv(t, nil)
	e.promote(t, refApp, "dev")
	e.revoke(t, digestApp, "dev")
	e.promote(t, refApp, "test")
	got := e.policy.last(t).States["dev"]
	want := policy.StageState{Promoted: true, PromotedAt: t0.Format(time.RFC3339), PromotedBy: "ci",
		Revoked: true, RevokedAt: t0.Format(time.RFC3339), RevokedBy: "ci", Reason: "CVE-1"}
	if got != want {
		t.Errorf("dev as the policy saw it = %+v, want %+v", got, want)
	}
}
