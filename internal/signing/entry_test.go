package signing

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

func TestCheckEntry(t *testing.T) {
	k := loadTestKeys(t)
	other := loadTestKeys(t)
	at := time.Unix(1700000000, 0).UTC()
	const repo = "registry.example/app"

	sign := func(s *Signer, predType string, pred any) []byte {
		t.Helper()
		st, err := NewStatement(repo, testDigest, predType, pred)
		if err != nil {
			t.Fatal(err)
		}
		env, err := s.Sign(st)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	promo := func(stage string, index uint64) []byte {
		return sign(k.signer, PromotionPredicateType, PromotionPredicate{Stage: stage, Repository: repo, Time: at, LedgerIndex: index})
	}
	entry := func(kind ledger.Kind, stage string, index uint64, env []byte) ledger.Entry {
		return ledger.Entry{Index: index, Kind: kind, Repository: repo, Digest: testDigest, Stage: stage, Time: at, Envelope: env}
	}
	otherRepo, err := NewStatement("registry.example/other", testDigest, PromotionPredicateType, PromotionPredicate{Stage: "prod", LedgerIndex: 5})
	if err != nil {
		t.Fatal(err)
	}
	otherRepoEnv, err := k.signer.Sign(otherRepo)
	if err != nil {
		t.Fatal(err)
	}
	frozenRequest := func(frozen bool) []byte {
		p := RequestPredicate{Stage: "prod", Repository: repo, Time: at, LedgerIndex: 5, Required: 0, Expires: at.Add(time.Hour)}
		if frozen {
			p.FreezeOverride = &FreezeOverride{Window: "weekend freeze"}
		}
		return sign(k.signer, RequestPredicateType, p)
	}
	bg := BreakGlassPredicate{Stage: "prod", Workload: "ns/Pod/p", Reason: "incident", Time: at, LedgerIndex: 9}
	bgEntry := entry(ledger.KindBreakGlass, "prod", 9, sign(k.signer, BreakGlassPredicateType, bg))
	bgEntry.Workload = "ns/Pod/p"

	tests := []struct {
		name    string
		entry   func() ledger.Entry
		wantErr error
		wantMsg string
	}{
		{name: "promotion matches", entry: func() ledger.Entry { return entry(ledger.KindPromotion, "prod", 5, promo("prod", 5)) }},
		{name: "revocation of all stages matches", entry: func() ledger.Entry {
			return entry(ledger.KindRevocation, ledger.AllStages, 6,
				sign(k.signer, RevocationPredicateType, RevocationPredicate{Stage: "*", Repository: repo, Time: at, LedgerIndex: 6}))
		}},
		{name: "break-glass matches", entry: func() ledger.Entry { return bgEntry }},
		{name: "foreign entry skips ledger index", entry: func() ledger.Entry {
			e := entry(ledger.KindPromotion, "prod", 77, promo("prod", 5))
			e.Foreign = true
			return e
		}},
		{name: "ledger index differs", entry: func() ledger.Entry { return entry(ledger.KindPromotion, "prod", 77, promo("prod", 5)) },
			wantErr: ErrEntryMismatch, wantMsg: "ledgerIndex 5, entry index 77"},
		{name: "stage differs", entry: func() ledger.Entry { return entry(ledger.KindPromotion, "test", 5, promo("prod", 5)) },
			wantErr: ErrEntryMismatch, wantMsg: `predicate stage "prod", entry stage "test"`},
		{name: "repository differs", entry: func() ledger.Entry { return entry(ledger.KindPromotion, "prod", 5, otherRepoEnv) },
			wantErr: ErrEntryMismatch, wantMsg: `subject name "registry.example/other"`},
		{name: "digest differs", entry: func() ledger.Entry {
			e := entry(ledger.KindPromotion, "prod", 5, promo("prod", 5))
			e.Digest = "sha256:" + strings.Repeat("f", 64)
			return e
		}, wantErr: ErrEntryMismatch, wantMsg: "subject digest"},
		{name: "kind differs", entry: func() ledger.Entry { return entry(ledger.KindRevocation, "prod", 5, promo("prod", 5)) },
			wantErr: ErrEntryMismatch, wantMsg: "predicateType"},
		{name: "unknown kind", entry: func() ledger.Entry { return entry("teleport", "prod", 5, promo("prod", 5)) },
			wantErr: ErrEntryMismatch, wantMsg: "unknown entry kind"},
		{name: "break-glass workload differs", entry: func() ledger.Entry {
			e := bgEntry
			e.Workload = "ns/Pod/other"
			return e
		}, wantErr: ErrEntryMismatch, wantMsg: "workload"},
		{name: "no envelope", entry: func() ledger.Entry { return entry(ledger.KindPromotion, "prod", 5, nil) },
			wantErr: ErrEntryMismatch, wantMsg: "no envelope"},
		{name: "signed by another key", entry: func() ledger.Entry {
			return entry(ledger.KindPromotion, "prod", 5,
				sign(other.signer, PromotionPredicateType, PromotionPredicate{Stage: "prod", LedgerIndex: 5}))
		}, wantErr: ErrBadSignature},
		{name: "freeze-override request matches", entry: func() ledger.Entry {
			e := entry(ledger.KindRequest, "prod", 5, frozenRequest(true))
			e.FreezeOverride = true
			return e
		}},
		{name: "request marked a freeze override, its predicate not", entry: func() ledger.Entry {
			e := entry(ledger.KindRequest, "prod", 5, frozenRequest(false))
			e.FreezeOverride = true
			return e
		}, wantErr: ErrEntryMismatch, wantMsg: "freezeOverride"},
		{name: "freeze-override predicate, request not marked", entry: func() ledger.Entry {
			return entry(ledger.KindRequest, "prod", 5, frozenRequest(true))
		}, wantErr: ErrEntryMismatch, wantMsg: "freezeOverride"},
		{name: "promotion during a freeze, made before the mark", entry: func() ledger.Entry {
			return entry(ledger.KindPromotion, "prod", 5, sign(k.signer, PromotionPredicateType,
				PromotionPredicate{Stage: "prod", Repository: repo, Time: at, LedgerIndex: 5, FreezeOverride: &FreezeOverride{Window: "w"}}))
		}},
		{name: "promotion marked a freeze override, its predicate not", entry: func() ledger.Entry {
			e := entry(ledger.KindPromotion, "prod", 5, promo("prod", 5))
			e.FreezeOverride = true
			return e
		}, wantErr: ErrEntryMismatch, wantMsg: "freezeOverride"},
		{name: "predicate without ledgerIndex", entry: func() ledger.Entry {
			return entry(ledger.KindPromotion, "prod", 5, sign(k.signer, PromotionPredicateType, map[string]any{"stage": "prod"}))
		}, wantErr: ErrEntryMismatch, wantMsg: "no ledgerIndex"},
	}
	check := CheckEntry(k.verifier)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.entry())
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantMsg != "" && !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("err = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}
