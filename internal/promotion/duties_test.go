package promotion_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

// prodDuties: the pipeline revokes dev and test, only release and security
// revoke prod; nobody overrides in test.
var prodDuties = promotion.WithDuties(map[string]promotion.Duties{
	"dev":  {Revoke: []string{"pipeline", "security"}, OverrideRevocation: []string{"pipeline", "security"}},
	"test": {Revoke: []string{"pipeline", "security"}, OverrideRevocation: []string{}},
	"prod": {Revoke: []string{"release", "security"}, OverrideRevocation: []string{"security"}},
})

// TestRevokeNeedsAGroup is the attack: a token with no groups (or the
// wrong ones) revoking prod gets a *ForbiddenError naming the groups that
// may, and the ledger is untouched: same size, same checkpoint. The ledger
// is set to fail every read and write, so a refusal that had read the
// ledger first would come back as that fault instead.
func TestRevokeNeedsAGroup(t *testing.T) {
	tests := map[string]struct {
		who        policy.Identity
		stage      string
		wantGroups []string
	}{
		"no groups, prod":             {policy.Identity{Subject: "anon"}, "prod", []string{"release", "security"}},
		"empty group name, prod":      {policy.Identity{Subject: "anon", Groups: []string{""}}, "prod", []string{"release", "security"}},
		"pipeline, prod":              {ci, "prod", []string{"release", "security"}},
		"pipeline, every stage":       {ci, ledger.AllStages, []string{"security"}},
		"release, every stage":        {policy.Identity{Subject: "rm", Groups: []string{"release"}}, ledger.AllStages, []string{"security"}},
		"no groups, dev":              {policy.Identity{Subject: "anon"}, "dev", []string{"pipeline", "security"}},
		"group of another stage, dev": {policy.Identity{Subject: "rm", Groups: []string{"release"}}, "dev", []string{"pipeline", "security"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil, prodDuties)
			e.promote(t, refApp, "dev")
			e.promote(t, refApp, "test")
			e.promote(t, refApp, "prod")
			size, cp := e.size(t), e.checkpoint(t)
			e.faults.stateErr = map[string]error{digestApp: ledger.ErrCorrupt}
			e.faults.appendErr = ledger.ErrReadOnly

			res, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: tc.stage, Reason: "mine now", Requester: tc.who})
			forbidden, ok := errors.AsType[*promotion.ForbiddenError](err)
			if !ok {
				t.Fatalf("err = %v, want a *ForbiddenError", err)
			}
			if !slices.Equal(forbidden.Groups, tc.wantGroups) || forbidden.Action != promotion.ActionRevoke {
				t.Errorf("forbidden = %+v, want action %q groups %q", forbidden, promotion.ActionRevoke, tc.wantGroups)
			}
			for _, g := range tc.wantGroups {
				if !strings.Contains(err.Error(), g) {
					t.Errorf("message %q does not name group %q", err, g)
				}
			}
			if res.Created || res.Receipt.Checkpoint != "" {
				t.Errorf("result = %+v, want none", res)
			}
			e.faults.stateErr, e.faults.appendErr = nil, nil
			if n := e.size(t); n != size {
				t.Errorf("ledger size %d after a refused revocation, want %d", n, size)
			}
			if got := e.checkpoint(t); got != cp {
				t.Errorf("checkpoint changed after a refused revocation:\n%s\nwant\n%s", got, cp)
			}
			if st := e.state(t, digestApp, "prod"); !st.Active() {
				t.Errorf("prod state = %+v after a refused revocation", st)
			}
		})
	}
}

// TestRevokeAllowed: a member of the stage's revoke groups revokes; "*"
// needs a group allowed in every stage.
func TestRevokeAllowed(t *testing.T) {
	tests := map[string]struct {
		who   policy.Identity
		stage string
	}{
		"release revokes prod":                   {policy.Identity{Subject: "rm", Groups: []string{"visitors", "release"}}, "prod"},
		"security revokes prod":                  {policy.Identity{Subject: "sec", Groups: []string{"security"}}, "prod"},
		"pipeline revokes test":                  {ci, "test"},
		"security revokes everywhere":            {policy.Identity{Subject: "sec", Groups: []string{"security"}}, ledger.AllStages},
		"pipeline and release revoke everywhere": {policy.Identity{Subject: "both", Groups: []string{"pipeline", "release"}}, ledger.AllStages},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil, prodDuties)
			e.promote(t, refApp, "dev")
			e.promote(t, refApp, "test")
			e.promote(t, refApp, "prod")
			res, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: tc.stage, Reason: "CVE-1", Requester: tc.who})
			if err != nil || !res.Created {
				t.Fatalf("Revoke = %+v, %v", res, err)
			}
			if res.Receipt.Entry.Subject != tc.who.Subject || !slices.Equal(res.Receipt.Entry.Groups, tc.who.Groups) {
				t.Errorf("entry names %s %v, want %s %v", res.Receipt.Entry.Subject, res.Receipt.Entry.Groups, tc.who.Subject, tc.who.Groups)
			}
		})
	}
}

// TestRevokeWithoutDuties: a service given no duties lets nobody revoke.
func TestRevokeWithoutDuties(t *testing.T) {
	e := newEnv(t, nil, promotion.WithDuties(nil))
	e.promote(t, refApp, "dev")
	_, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: "x", Requester: ci})
	if f, ok := errors.AsType[*promotion.ForbiddenError](err); !ok || len(f.Groups) != 0 || !strings.Contains(err.Error(), "nobody may") {
		t.Fatalf("err = %v, want a *ForbiddenError saying nobody may", err)
	}
}
