package ledger_test

import (
	"reflect"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

// A build on a replicated leader decides on ViewPending: it must show
// exactly what the ledger shows once the pending entries are applied.
func TestViewPendingShowsWhatApplyingWill(t *testing.T) {
	leader, replica, v := replicaPair(t)
	written := built(t, 0, promotion("r/a", digest(1), "dev", digest(11), digest(12)), promotion("r/b", digest(2), "dev"))
	cp, err := leader.Seal(written, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*ledger.Ledger{leader, replica} {
		if err := l.ApplyReplicated(written, cp, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	pending := built(t, 2,
		revocation("r/a", digest(11), "dev"),           // a platform: reaches its index
		promotion("r/c", digest(3), "prod"),            // a new digest
		revocation("r/b", digest(2), ledger.AllStages), // every stage
		promotion("r/b", digest(2), "dev"),             // lifted again in dev
	)
	var views []map[string]any
	for _, apply := range []bool{false, true} {
		if apply {
			cp, err := leader.Seal(pending, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := replica.ApplyReplicated(pending, cp, v, nil); err != nil {
				t.Fatal(err)
			}
		}
		got := map[string]any{}
		l, p := leader, pending
		if apply {
			l, p = replica, nil
		}
		if err := l.ViewPending(p, func(r ledger.Reader) error {
			got["size"] = r.Size()
			for _, d := range []string{digest(1), digest(11), digest(12), digest(2), digest(3), digest(4)} {
				for _, st := range []string{"dev", "prod"} {
					s, ok, err := r.State(d, st)
					if err != nil {
						return err
					}
					got[d+" "+st] = []any{s, ok}
				}
			}
			for i := range uint64(6) {
				e, err := r.Entry(i)
				if err != nil {
					return err
				}
				got[e.Digest+" entry"] = e.Index
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		views = append(views, got)
	}
	if !reflect.DeepEqual(views[0], views[1]) {
		t.Fatalf("pending view\n%v\nafter applying\n%v", views[0], views[1])
	}
	if s := views[0][digest(1)+" dev"].([]any)[0].(ledger.State); !s.Revoked || s.RevokedDigest != digest(11) {
		t.Fatalf("the index is not revoked through its platform: %+v", s)
	}
	if ok := views[0][digest(4)+" dev"].([]any)[1].(bool); ok {
		t.Fatal("a digest nobody promoted is known")
	}
	// The written ledger itself did not change.
	if n, _ := leader.Size(); n != 2 {
		t.Fatalf("leader size %d after ViewPending, want 2", n)
	}
}
