package promotion_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

// TestRecordBreakGlass: the entry is signed about the workload (named by
// the sha256 of its name, since its images may have no digest), carries
// who overrode what and why, and is logged as a warning.
func TestRecordBreakGlass(t *testing.T) {
	var logs bytes.Buffer
	e := newEnv(t, nil, promotion.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	e.promote(t, refApp, "dev") // so the break-glass is not entry 0 by chance
	bg := promotion.BreakGlass{Stage: "prod", Workload: "shop/Deployment/cart", Justification: "INC-42: checkout down",
		User: "alice", Groups: []string{"sre"}, Images: []string{"reg.example/shop/cart:hotfix"}}

	index, err := e.svc.RecordBreakGlass(context.Background(), bg)
	if err != nil {
		t.Fatal(err)
	}
	if index != 1 {
		t.Errorf("index = %d, want 1", index)
	}
	var ent ledger.Entry
	if err := e.ledger.View(func(r ledger.Reader) (err error) { ent, err = r.Entry(index); return err }); err != nil {
		t.Fatal(err)
	}
	wantDigest := digestOf(bg.Workload)
	if ent.Kind != ledger.KindBreakGlass || ent.Digest != wantDigest || ent.Repository != bg.Workload || ent.Workload != bg.Workload ||
		ent.Stage != "prod" || ent.Subject != "alice" || !slices.Equal(ent.Groups, bg.Groups) || ent.Reason != bg.Justification ||
		!slices.Equal(ent.Images, bg.Images) || !ent.Time.Equal(t0) || len(ent.Envelope) == 0 {
		t.Errorf("entry = %+v", ent)
	}
	st := e.signer.last(t)
	var pred signing.BreakGlassPredicate
	decodePredicate(t, st, &pred)
	if st.PredicateType != signing.BreakGlassPredicateType || subjectOf(st) != bg.Workload+"@"+wantDigest ||
		pred.Workload != bg.Workload || pred.Reason != bg.Justification || pred.Requester.Subject != "alice" ||
		pred.LedgerIndex != index || !slices.Equal(pred.Images, bg.Images) || !pred.Time.Equal(t0) {
		t.Errorf("statement %s about %s, predicate %+v", st.PredicateType, subjectOf(st), pred)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), bg.Workload) {
		t.Errorf("log = %q, want a warning naming the workload", logs.String())
	}
}

// TestRecordBreakGlassRefuses covers every way RecordBreakGlass refuses;
// none writes anything.
func TestRecordBreakGlassRefuses(t *testing.T) {
	errSign := errors.New("kms: key disabled")
	long := strings.Repeat("n", 1025)
	ok := func() promotion.BreakGlass {
		return promotion.BreakGlass{Stage: "prod", Workload: "shop/Pod/p", Justification: "INC-1", User: "alice"}
	}
	tests := map[string]struct {
		edit   func(bg *promotion.BreakGlass)
		setup  func(e *env)
		wantIs error
	}{
		"justification too long": {
			edit:   func(bg *promotion.BreakGlass) { bg.Justification = long },
			wantIs: promotion.ErrInvalid,
		},
		"justification with a control character": {
			edit:   func(bg *promotion.BreakGlass) { bg.Justification = "INC-1\nlevel=INFO msg=forged" },
			wantIs: promotion.ErrInvalid,
		},
		"too many images": {
			edit: func(bg *promotion.BreakGlass) {
				bg.Images = slices.Repeat([]string{"reg.example/app:1"}, 129)
			},
			wantIs: promotion.ErrInvalid,
		},
		"workload name too long": {
			edit:   func(bg *promotion.BreakGlass) { bg.Workload = long },
			wantIs: promotion.ErrInvalid,
		},
		"user name too long": {
			edit:   func(bg *promotion.BreakGlass) { bg.User = long },
			wantIs: promotion.ErrInvalid,
		},
		"image name too long": {
			edit:   func(bg *promotion.BreakGlass) { bg.Images = []string{"reg.example/app:1", long} },
			wantIs: promotion.ErrInvalid,
		},
		"signer fails": {
			setup:  func(e *env) { e.signer.err = errSign },
			wantIs: errSign,
		},
		"ledger refuses the write": {
			setup:  func(e *env) { e.faults.appendErr = ledger.ErrReadOnly },
			wantIs: ledger.ErrReadOnly,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, nil)
			if tc.setup != nil {
				tc.setup(e)
			}
			bg := ok()
			if tc.edit != nil {
				tc.edit(&bg)
			}
			if _, err := e.svc.RecordBreakGlass(context.Background(), bg); !errors.Is(err, tc.wantIs) {
				t.Fatalf("err = %v, want %v", err, tc.wantIs)
			}
			if n := e.size(t); n != 0 {
				t.Errorf("ledger size = %d after a refused break-glass", n)
			}
		})
	}
	// At the bounds, it is recorded.
	e := newEnv(t, nil)
	bg := ok()
	bg.Justification, bg.Workload = strings.Repeat("j", 1024), strings.Repeat("w", 1024)
	bg.Images = slices.Repeat([]string{strings.Repeat("i", 1024)}, 128)
	if _, err := e.svc.RecordBreakGlass(context.Background(), bg); err != nil {
		t.Fatalf("at the bounds: %v", err)
	}
}
