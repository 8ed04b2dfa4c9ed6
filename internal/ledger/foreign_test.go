package ledger_test

import (
	"testing"

	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// A stage that requires a fresh registry source must tell a promotion
// imported from another stagegate from one made here, from State alone.
func TestStateSaysWhetherThePromotionIsForeign(t *testing.T) {
	l, v := ledgertest.New(t)
	d := digest(1)
	foreign := promotion("reg/app", d, "prod")
	foreign.Foreign = true
	mustAppend(t, l, foreign)
	st, found, err := l.State(d, "prod")
	if err != nil || !found || !st.Active() || !st.Foreign {
		t.Fatalf("after a foreign promotion: %+v found=%v err=%v, want active and foreign", st, found, err)
	}
	mustAppend(t, l, promotion("reg/app", d, "prod"))
	st, _, err = l.State(d, "prod")
	if err != nil || !st.Active() || st.Foreign {
		t.Fatalf("after a local promotion: %+v, %v, want active, not foreign", st, err)
	}
	mustAppend(t, l, foreign)
	st, _, _ = l.State(d, "prod")
	if !st.Foreign {
		t.Fatalf("after a second foreign promotion: %+v, want foreign", st)
	}
	// Verify rebuilds the index from the entries and compares bytes: the
	// flag must be part of what it derives.
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}
