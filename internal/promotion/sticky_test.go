package promotion_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

var security = policy.Identity{Subject: "sec", Groups: []string{"security"}}

// TestRevocationsAreSticky: once revoked in a stage, a digest is not put
// back there by a plain promotion (a pipeline re-run), nor by an override
// from a group that may not, nor by an override without a reason; each
// refusal writes nothing. The refusals of an override come before the
// registry is asked: the resolver is made to fail, and is never reached.
func TestRevocationsAreSticky(t *testing.T) {
	tests := map[string]struct {
		req      promotion.Request
		breakReg bool
		check    func(t *testing.T, err error, revocation uint64)
	}{
		"plain re-run": {
			req: promotion.Request{Image: refApp, Stage: "prod", Requester: policy.Identity{Subject: "rm", Groups: []string{"release"}}},
			check: func(t *testing.T, err error, revocation uint64) {
				rev, ok := errors.AsType[*promotion.RevokedError](err)
				if !ok {
					t.Fatalf("err = %v, want a *RevokedError", err)
				}
				if rev.Index != revocation || rev.By != "sec" || rev.Reason != "CVE-1" || !rev.At.Equal(t0) || rev.Stage != "prod" ||
					rev.Digest != digestApp || len(rev.OverrideGroups) != 1 || rev.OverrideGroups[0] != "security" {
					t.Errorf("revoked error = %+v, want revocation %d by sec for CVE-1, overridable by security", rev, revocation)
				}
				for _, want := range []string{"ledger entry", "CVE-1", "security", "--override-revocation"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("message %q does not say %q", err, want)
					}
				}
			},
		},
		"override from a group that may not": {
			req: promotion.Request{Image: refApp, Stage: "prod", Reason: "we need it", OverrideRevocation: true,
				Requester: policy.Identity{Subject: "rm", Groups: []string{"release"}}},
			breakReg: true,
			check: func(t *testing.T, err error, _ uint64) {
				f, ok := errors.AsType[*promotion.ForbiddenError](err)
				if !ok || f.Action != promotion.ActionOverrideRevocation || len(f.Groups) != 1 || f.Groups[0] != "security" {
					t.Fatalf("err = %v, want a *ForbiddenError to override, naming security", err)
				}
			},
		},
		"override without groups": {
			req:      promotion.Request{Image: refApp, Stage: "prod", Reason: "we need it", OverrideRevocation: true, Requester: policy.Identity{Subject: "anon"}},
			breakReg: true,
			check: func(t *testing.T, err error, _ uint64) {
				if _, ok := errors.AsType[*promotion.ForbiddenError](err); !ok {
					t.Fatalf("err = %v, want a *ForbiddenError", err)
				}
			},
		},
		"override without a reason": {
			req:      promotion.Request{Image: refApp, Stage: "prod", Reason: "  ", OverrideRevocation: true, Requester: security},
			breakReg: true,
			check: func(t *testing.T, err error, _ uint64) {
				if !errors.Is(err, promotion.ErrInvalid) || !strings.Contains(err.Error(), "reason") {
					t.Fatalf("err = %v, want ErrInvalid about the reason", err)
				}
			},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil, prodDuties)
			e.promote(t, refApp, "prod")
			rv, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "CVE-1", Requester: security})
			if err != nil {
				t.Fatal(err)
			}
			size, cp := e.size(t), e.checkpoint(t)
			if tc.breakReg {
				e.resolver.err = errors.New("registry must not be asked")
			}
			res, err := e.svc.Promote(context.Background(), tc.req)
			tc.check(t, err, rv.Receipt.Entry.Index)
			if res.Created {
				t.Error("a refused promotion was created")
			}
			if n, c := e.size(t), e.checkpoint(t); n != size || c != cp {
				t.Errorf("ledger size %d (want %d), checkpoint changed %v, after a refused promotion", n, size, c != cp)
			}
			if st := e.state(t, digestApp, "prod"); st.Active() || st.RevokedIndex != rv.Receipt.Entry.Index {
				t.Errorf("prod state %+v, want still revoked by %d", st, rv.Receipt.Entry.Index)
			}
		})
	}
}

// TestOverrideRevocation: a member of the override groups puts a revoked
// digest back; the entry and its signed predicate name the revocation, and
// the digest is active again. Overriding where nothing is revoked records
// no override, and a repeat answers with the same receipt.
func TestOverrideRevocation(t *testing.T) {
	e := newEnv(t, nil, prodDuties)
	e.promote(t, refApp, "prod")
	rv, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "CVE-1", Requester: security})
	if err != nil {
		t.Fatal(err)
	}
	revIdx := rv.Receipt.Entry.Index
	req := promotion.Request{Image: refApp, Stage: "prod", Reason: "CVE-1 was a false positive (SEC-9)", OverrideRevocation: true, Requester: security}
	res, err := e.svc.Promote(context.Background(), req)
	if err != nil || !res.Created {
		t.Fatalf("override = %+v, %v", res, err)
	}
	ent := res.Receipt.Entry
	if ent.OverridesRevocation == nil || *ent.OverridesRevocation != revIdx || ent.Reason != req.Reason || ent.Subject != "sec" {
		t.Errorf("entry = %+v, want overridesRevocation %d with the reason", ent, revIdx)
	}
	var pred signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &pred)
	if o := pred.RevocationOverride; o == nil || o.LedgerIndex != revIdx || o.RevokedBy != "sec" || o.Reason != "CVE-1" || !o.RevokedAt.Equal(t0) {
		t.Errorf("predicate revocationOverride = %+v, want revocation %d by sec for CVE-1", pred.RevocationOverride, revIdx)
	}
	if st := e.state(t, digestApp, "prod"); !st.Active() || st.PromotedIndex != ent.Index {
		t.Errorf("prod state %+v, want active from %d", st, ent.Index)
	}
	again, err := e.svc.Promote(context.Background(), req)
	if err != nil || again.Created || again.Receipt.Entry.Index != ent.Index {
		t.Errorf("repeat = %+v, %v, want the receipt of %d", again, err, ent.Index)
	}

	// Nothing revoked in dev: the flag is allowed and records nothing.
	res, err = e.svc.Promote(context.Background(), promotion.Request{Image: refApp, Stage: "dev", Reason: "r", OverrideRevocation: true, Requester: ci})
	if err != nil || !res.Created || res.Receipt.Entry.OverridesRevocation != nil {
		t.Errorf("override with nothing revoked = %+v, %v", res.Receipt.Entry, err)
	}
	var plain signing.PromotionPredicate
	decodePredicate(t, e.signer.last(t), &plain)
	if plain.RevocationOverride != nil {
		t.Errorf("predicate names an override where nothing was revoked: %+v", plain.RevocationOverride)
	}
}
