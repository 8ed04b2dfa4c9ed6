package promotion_test

import (
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
)

func TestStageState(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("CET", 3600))
	tests := map[string]struct {
		in   ledger.State
		want policy.StageState
	}{
		"unknown": {},
		"promoted": {in: ledger.State{Promoted: true, PromotedAt: at, PromotedBy: "ci"},
			want: policy.StageState{Promoted: true, PromotedAt: "2026-03-01T11:00:00Z", PromotedBy: "ci"}},
		"revoked after promotion": {in: ledger.State{Promoted: true, PromotedAt: at, Revoked: true, RevokedAt: at.Add(time.Hour), RevokedBy: "sec", RevokeReason: "CVE"},
			want: policy.StageState{Promoted: true, PromotedAt: "2026-03-01T11:00:00Z", Revoked: true, RevokedAt: "2026-03-01T12:00:00Z", RevokedBy: "sec", Reason: "CVE"}},
		"a time without its fact is not shown": {in: ledger.State{PromotedAt: at, RevokedAt: at},
			want: policy.StageState{}},
		"a fact without a time has no time": {in: ledger.State{Revoked: true}, want: policy.StageState{Revoked: true}},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			if got := promotion.StageState(tt.in); got != tt.want {
				t.Fatalf("StageState = %+v, want %+v", got, tt.want)
			}
		})
	}
}
