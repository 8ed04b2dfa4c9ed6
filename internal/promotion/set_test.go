package promotion_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

const (
	repoConfig = "reg.example/shop/config"
	refConfig  = repoConfig + ":1.0"
)

var digestConfig = digestOf("config")

// setEnv is newEnv with a config artifact beside the app image.
func setEnv(t *testing.T, opts ...promotion.Option) *env {
	t.Helper()
	e := newEnv(t, nil, opts...)
	e.resolver.images[refConfig] = registry.Resolved{Reference: refConfig, Repository: repoConfig, Tag: "1.0", Digest: digestConfig}
	return e
}

func (e *env) promoteSet(t *testing.T, stage string, refs ...string) promotion.SetResult {
	t.Helper()
	res, err := e.svc.PromoteSet(context.Background(), promotion.SetRequest{Images: refs, Stage: stage, Requester: ci})
	if err != nil {
		t.Fatalf("PromoteSet(%v, %s): %v", refs, stage, err)
	}
	return res
}

// TestPromoteSet: one request records every member in one append, each
// entry names the whole set, the policy sees the set for each member, the
// receipt verifies, and a retry records nothing and answers the same.
func TestPromoteSet(t *testing.T) {
	e := setEnv(t)
	res := e.promoteSet(t, "dev", refApp, refConfig)
	if !res.Created || e.size(t) != 2 {
		t.Fatalf("created %v, ledger size %d; want a new set of 2 entries", res.Created, e.size(t))
	}
	want := []ledger.SetMember{
		{Repository: repoApp, Digest: digestApp, LedgerIndex: 0},
		{Repository: repoConfig, Digest: digestConfig, LedgerIndex: 1},
	}
	if !slices.Equal(res.Receipt.Members, want) {
		t.Fatalf("members %+v, want %+v", res.Receipt.Members, want)
	}
	for i, rc := range res.Receipt.Receipts {
		if !slices.Equal(rc.Entry.Set, want) {
			t.Errorf("entry %d names the set %+v, want %+v", i, rc.Entry.Set, want)
		}
		if !e.state(t, want[i].Digest, "dev").Active() {
			t.Errorf("%s is not active in dev", want[i].Digest)
		}
	}
	if err := ledger.VerifySetReceipt(res.Receipt, e.logKey, nil); err != nil {
		t.Fatalf("set receipt does not verify: %v", err)
	}
	if in := e.policy.last(t); len(in.Set) != 2 || in.Set[0].Digest != digestApp || in.Set[1].Digest != digestConfig {
		t.Errorf("policy input.set = %+v, want both members", in.Set)
	}
	if n := e.policy.asked(); n < 2 {
		t.Errorf("policy asked %d times, want once per member at least", n)
	}

	again := e.promoteSet(t, "dev", refApp, refConfig)
	if again.Created || e.size(t) != 2 {
		t.Fatalf("retry: created %v, ledger size %d; want nothing recorded", again.Created, e.size(t))
	}
	if !slices.Equal(again.Receipt.Members, want) {
		t.Fatalf("retry members %+v, want %+v", again.Receipt.Members, want)
	}
}

// TestPromoteSetKeepsWhatIsThere: a member already in the stage keeps its
// entry; the set records the others and names that entry.
func TestPromoteSetKeepsWhatIsThere(t *testing.T) {
	e := setEnv(t)
	e.promote(t, refApp, "dev")
	res := e.promoteSet(t, "dev", refApp, refConfig)
	want := []ledger.SetMember{
		{Repository: repoApp, Digest: digestApp, LedgerIndex: 0},
		{Repository: repoConfig, Digest: digestConfig, LedgerIndex: 1},
	}
	if !res.Created || e.size(t) != 2 || !slices.Equal(res.Receipt.Members, want) {
		t.Fatalf("created %v, size %d, members %+v; want one new entry and the earlier one named", res.Created, e.size(t), res.Receipt.Members)
	}
	if res.Receipt.Receipts[0].Entry.Set != nil {
		t.Error("the earlier single promotion was rewritten with a set")
	}
	if err := ledger.VerifySetReceipt(res.Receipt, e.logKey, nil); err != nil {
		t.Fatalf("set receipt does not verify: %v", err)
	}
}

// perDigestPolicy denies the digests in deny, and allows the rest.
type perDigestPolicy struct {
	mu   sync.Mutex
	deny map[string]string
}

func (p *perDigestPolicy) Promotion(_ context.Context, in policy.PromotionInput) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.deny[in.Image.Digest]; ok {
		return []string{v}, nil
	}
	return nil, nil
}

func (p *perDigestPolicy) Digest() string { return fakePolicyDigest }

// TestPromoteSetRefuses: whatever refuses one member refuses the set, and
// nothing is written; the error names the member.
func TestPromoteSetRefuses(t *testing.T) {
	tests := map[string]struct {
		refs   []string
		stage  string
		setup  func(t *testing.T, e *env)
		opts   []promotion.Option
		wantIs error
		// wantIn must be in the error's text.
		wantIn string
		// wantDenied, if set, is a violation the *DeniedError must list.
		wantDenied string
	}{
		"one digest missing": {
			refs: []string{refApp, repoConfig + ":gone"}, stage: "dev",
			wantIs: registry.ErrNotFound, wantIn: repoConfig + ":gone",
		},
		"no images": {stage: "dev", wantIs: promotion.ErrInvalid, wantIn: "images are required"},
		"an empty image": {
			refs: []string{refApp, " "}, stage: "dev", wantIs: promotion.ErrInvalid, wantIn: "image 2",
		},
		"too many images": {
			refs: slices.Repeat([]string{refApp}, ledger.MaxSetMembers+1), stage: "dev",
			wantIs: promotion.ErrInvalid, wantIn: "at most",
		},
		"the same digest twice": {
			refs: []string{refApp, repoApp + "@" + digestApp}, stage: "dev",
			setup: func(t *testing.T, e *env) {
				ref := repoApp + "@" + digestApp
				e.resolver.images[ref] = registry.Resolved{Reference: ref, Repository: repoApp, Digest: digestApp}
			},
			wantIs: promotion.ErrInvalid, wantIn: "same digest",
		},
		"unknown stage": {refs: []string{refApp, refConfig}, stage: "qa", wantIs: promotion.ErrInvalid},
		"a stage with approvals": {
			refs: []string{refApp, refConfig}, stage: "prod",
			opts:   []promotion.Option{promotion.WithApprovals(map[string]promotion.ApprovalRule{"prod": {Required: 1}})},
			wantIs: promotion.ErrInvalid, wantIn: "one image per request",
		},
		"one member denied by the policy": {
			refs: []string{refApp, refConfig}, stage: "dev",
			setup: func(t *testing.T, e *env) {
				e.svc = promotion.New(e.faults, e.signer, &perDigestPolicy{deny: map[string]string{digestConfig: "not built by CI"}},
					e.resolver, stages, promotion.WithClock(func() time.Time { return t0 }), pipelineDuties)
			},
			wantDenied: refConfig + ": not built by CI",
		},
		"one member revoked in the stage": {
			refs: []string{refApp, refConfig}, stage: "dev",
			setup: func(t *testing.T, e *env) {
				e.promote(t, refConfig, "dev")
				e.revoke(t, digestConfig, "dev")
			},
			wantIn: refConfig,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := setEnv(t, tc.opts...)
			if tc.setup != nil {
				tc.setup(t, e)
			}
			before := e.size(t)
			_, err := e.svc.PromoteSet(context.Background(), promotion.SetRequest{Images: tc.refs, Stage: tc.stage, Requester: ci})
			if err == nil {
				t.Fatal("PromoteSet succeeded")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %v, want %v", err, tc.wantIs)
			}
			if tc.wantIn != "" && !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("error %q does not name %q", err, tc.wantIn)
			}
			if tc.wantDenied != "" {
				var denied *promotion.DeniedError
				if !errors.As(err, &denied) || !slices.Contains(denied.Violations, tc.wantDenied) {
					t.Errorf("error %v, want a denial listing %q", err, tc.wantDenied)
				}
			}
			if after := e.size(t); after != before {
				t.Errorf("ledger grew from %d to %d entries", before, after)
			}
		})
	}
}

// TestPromoteSetDuringAFreeze: a set is not a freeze-override request. A
// pipeline's emergency set during the freeze is refused, writing nothing,
// with a message that says to ask for each image on its own; an emergency
// set from a member of freezeOverrideGroups passes and records the freeze;
// a plain set during the freeze is refused as closed.
func TestPromoteSetDuringAFreeze(t *testing.T) {
	c := &clock{now: at("2026-03-28T12:00:00Z")} // Saturday, frozen until Monday 06:00 UTC
	e := setEnv(t, weekendFreeze(t), c.opt())
	e.promote(t, refApp, "test")
	e.promote(t, refConfig, "test")
	refs := []string{refApp, refConfig}
	size := e.size(t)
	emergencySet := func(by policy.Identity) promotion.SetRequest {
		return promotion.SetRequest{Images: refs, Stage: "prod", Requester: by, FreezeOverride: true, Reason: "INC-7: checkout down"}
	}

	_, err := e.svc.PromoteSet(context.Background(), emergencySet(ci))
	fe, ok := errors.AsType[*promotion.ForbiddenError](err)
	if !ok || fe.Action != promotion.ActionFreezeOverride || e.size(t) != size {
		t.Fatalf("pipeline's emergency set: %v, size %d → %d", err, size, e.size(t))
	}
	for _, want := range []string{"ci may not promote during a freeze", "only groups sre-oncall may", "a promotion set does not open a freeze-override request", "promote each image on its own"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	_, err = e.svc.PromoteSet(context.Background(), promotion.SetRequest{Images: refs, Stage: "prod", Requester: ci})
	if !errors.As(err, new(*promotion.ClosedError)) || e.size(t) != size {
		t.Fatalf("plain set during the freeze: %v, size %d → %d", err, size, e.size(t))
	}

	res, err := e.svc.PromoteSet(context.Background(), emergencySet(sre2))
	if err != nil || len(res.Receipt.Receipts) != 2 || e.size(t) != size+2 {
		t.Fatalf("on-call's emergency set: %+v, %v, size %d → %d", res, err, size, e.size(t))
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if fo := pred.FreezeOverride; fo == nil || fo.Window != "weekend freeze" || fo.ApprovedBy != "oncall-2" {
		t.Errorf("the set's last promotion records freezeOverride %+v, want the weekend freeze by oncall-2", pred.FreezeOverride)
	}
}
