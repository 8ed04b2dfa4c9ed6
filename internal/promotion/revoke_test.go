package promotion_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

// TestRevokeRefuses covers every way Revoke refuses; each writes nothing
// after the promotion the case starts from.
func TestRevokeRefuses(t *testing.T) {
	errSign := errors.New("kms: key disabled")
	tests := map[string]struct {
		rev    promotion.Revocation
		setup  func(e *env)
		wantIs error
	}{
		"digest not sha256": {
			rev:    promotion.Revocation{Digest: "sha512:" + strings.Repeat("ab", 64), Stage: "dev", Reason: "x"},
			wantIs: promotion.ErrInvalid,
		},
		"digest in upper case": {
			rev:    promotion.Revocation{Digest: strings.ToUpper(digestApp), Stage: "dev", Reason: "x"},
			wantIs: promotion.ErrInvalid,
		},
		"no stage": {
			rev:    promotion.Revocation{Digest: digestApp, Reason: "x"},
			wantIs: promotion.ErrInvalid,
		},
		"unknown stage": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "qa", Reason: "x"},
			wantIs: promotion.ErrInvalid,
		},
		"blank reason": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: " \t "},
			wantIs: promotion.ErrInvalid,
		},
		"reason too long": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: strings.Repeat("r", 1025)},
			wantIs: promotion.ErrInvalid,
		},
		"reason with a control character": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: "CVE\r\nforged"},
			wantIs: promotion.ErrInvalid,
		},
		"not promoted to the stage": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "x"},
			wantIs: promotion.ErrNotPromoted,
		},
		"never promoted": {
			rev:    promotion.Revocation{Digest: digestOf("unknown"), Stage: ledger.AllStages, Reason: "x"},
			wantIs: promotion.ErrNotPromoted,
		},
		"other repository": {
			// The repository, when given, must be the one promoted: it is
			// the subject of the signed revocation.
			rev:    promotion.Revocation{Digest: digestApp, Repository: "reg.example/other", Stage: "dev", Reason: "x"},
			wantIs: promotion.ErrInvalid,
		},
		"state does not decode": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: ledger.AllStages, Reason: "x"},
			setup:  func(e *env) { e.faults.stateErr = map[string]error{digestApp: ledger.ErrCorrupt} },
			wantIs: ledger.ErrCorrupt,
		},
		"signer fails": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: "x"},
			setup:  func(e *env) { e.signer.err = errSign },
			wantIs: errSign,
		},
		"ledger refuses the write": {
			rev:    promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: "x"},
			setup:  func(e *env) { e.faults.appendErr = ledger.ErrReadOnly },
			wantIs: ledger.ErrReadOnly,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, map[string]promotion.StageOptions{"dev": {Attest: true}})
			e.promote(t, refApp, "dev")
			e.registry.took()
			if tc.setup != nil {
				tc.setup(e)
			}
			tc.rev.Requester = ci
			res, err := e.svc.Revoke(context.Background(), tc.rev)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
			if res.Created || res.Receipt.Checkpoint != "" {
				t.Errorf("result = %+v, want none", res)
			}
			if n := e.size(t); n != 1 {
				t.Errorf("ledger size = %d after a refused revocation, want 1", n)
			}
			if st := e.state(t, digestApp, "dev"); !st.Active() {
				t.Errorf("state = %+v after a refused revocation", st)
			}
			if got := e.registry.took(); len(got) != 0 {
				t.Errorf("a refused revocation reached the registry: %s", callsString(got))
			}
		})
	}
}

// TestRevokeRecordsSignsAndPublishes: a revocation is signed about the
// repository that was promoted, travels to every copy of the promotion,
// and moves no tag; revoking it again answers with the existing receipt.
func TestRevokeRecordsSignsAndPublishes(t *testing.T) {
	e := newEnv(t, map[string]promotion.StageOptions{
		"prod": {Attest: true, Tag: "prod", Target: func(string) string { return repoMirror }},
	})
	e.promote(t, refApp, "prod")
	e.registry.took()

	res, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Repository: repoApp,
		Stage: "prod", Reason: "CVE-1", Requester: ci})
	if err != nil {
		t.Fatal(err)
	}
	ent := res.Receipt.Entry
	if !res.Created || ent.Kind != ledger.KindRevocation || ent.Repository != repoApp || ent.Stage != "prod" ||
		ent.Reason != "CVE-1" || ent.Subject != "ci" || !ent.Time.Equal(t0) || !slices.Equal(ent.Copies, []string{repoMirror}) {
		t.Errorf("revocation = %+v (created %v)", ent, res.Created)
	}
	if st := e.state(t, digestApp, "prod"); st.Active() || st.RevokedIndex != ent.Index {
		t.Errorf("state = %+v, want revoked by entry %d", st, ent.Index)
	}
	st := e.signer.last(t)
	var pred signing.RevocationPredicate
	decodePredicate(t, st, &pred)
	if st.PredicateType != signing.RevocationPredicateType || subjectOf(st) != repoApp+"@"+digestApp ||
		pred.Stage != "prod" || pred.LedgerIndex != ent.Index || pred.Reason != "CVE-1" || !pred.Time.Equal(t0) {
		t.Errorf("statement %s about %s, predicate %+v", st.PredicateType, subjectOf(st), pred)
	}
	want := []string{"attach " + repoApp + "@" + digestApp, "attach " + repoMirror + "@" + digestApp}
	if got := e.registry.took(); !sameCalls(got, want) {
		t.Errorf("registry calls = %s, want %s", callsString(got), callsString(want))
	}

	again, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: "prod", Reason: "again", Requester: ci})
	if err != nil || again.Created || again.Receipt.Entry.Index != ent.Index {
		t.Fatalf("repeat = %+v, %v: want the existing receipt of entry %d", again, err, ent.Index)
	}
	if n := e.size(t); n != 2 {
		t.Errorf("ledger size = %d after a repeat, want 2", n)
	}
}

// TestRevokeEverywhere: "*" revokes every stage the digest is in, and is
// attested when any stage attests.
func TestRevokeEverywhere(t *testing.T) {
	tests := map[string]struct {
		stageOpts map[string]promotion.StageOptions
		want      []string
	}{
		"one stage attests": {
			// Not the last stage: any one of them is enough.
			stageOpts: map[string]promotion.StageOptions{"test": {Attest: true}},
			want:      []string{"attach " + repoApp + "@" + digestApp},
		},
		"no stage attests": {
			stageOpts: map[string]promotion.StageOptions{"prod": {Tag: "prod"}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, tc.stageOpts)
			e.promote(t, refApp, "dev")
			e.promote(t, refApp, "test")
			e.registry.took()
			rv := e.revoke(t, digestApp, ledger.AllStages)
			if !rv.Created || rv.Receipt.Entry.Stage != ledger.AllStages {
				t.Fatalf("revocation = %+v", rv)
			}
			for _, s := range stages {
				if st := e.state(t, digestApp, s); st.Active() {
					t.Errorf("still active in %s: %+v", s, st)
				}
			}
			if got := e.registry.took(); !sameCalls(got, tc.want) {
				t.Errorf("registry calls = %s, want %s", callsString(got), callsString(tc.want))
			}
			if again := e.revoke(t, digestApp, ledger.AllStages); again.Created || again.Receipt.Entry.Index != rv.Receipt.Entry.Index {
				t.Errorf("repeat = %+v, want the existing receipt", again)
			}
		})
	}
}

// TestRevokePublishError: the revocation is recorded, and in force, even
// when attaching it fails; the error names the entry.
func TestRevokePublishError(t *testing.T) {
	errDown := errors.New("registry: 503 service unavailable")
	e := newEnv(t, map[string]promotion.StageOptions{"dev": {Attest: true}})
	e.promote(t, refApp, "dev")
	e.registry.attachErr = map[string]error{repoApp: errDown}

	res, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digestApp, Stage: "dev", Reason: "CVE-1", Requester: ci})
	var pub *promotion.PublishError
	if !errors.As(err, &pub) || !errors.Is(err, errDown) {
		t.Fatalf("err = %v, want a *PublishError wrapping %v", err, errDown)
	}
	if !res.Created || pub.Index != res.Receipt.Entry.Index || res.Receipt.Entry.Kind != ledger.KindRevocation {
		t.Fatalf("result = %+v, publish error for entry %d", res, pub.Index)
	}
	if st := e.state(t, digestApp, "dev"); st.Active() {
		t.Errorf("state = %+v: the revocation must be in force although publishing failed", st)
	}

	// Revoking again retries the publication.
	e.registry.attachErr = nil
	e.registry.took()
	again := e.revoke(t, digestApp, "dev")
	if again.Created || again.Receipt.Entry.Index != res.Receipt.Entry.Index {
		t.Errorf("retry = %+v, want the existing receipt", again)
	}
	if got, want := e.registry.took(), []string{"attach " + repoApp + "@" + digestApp}; !sameCalls(got, want) {
		t.Errorf("registry calls on retry = %s, want %s", callsString(got), callsString(want))
	}
}
