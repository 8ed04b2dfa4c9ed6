package ledger_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// setOf returns a BuildAllFunc that appends a promotion set of the given
// digests to stage, each entry naming the whole set.
func setOf(repo, stage string, digests ...string) ledger.BuildAllFunc {
	return func(_ ledger.Reader, next uint64) ([]*ledger.Entry, error) {
		set := make([]ledger.SetMember, len(digests))
		for i, d := range digests {
			set[i] = ledger.SetMember{Repository: repo, Digest: d, LedgerIndex: next + uint64(i)}
		}
		es := make([]*ledger.Entry, len(digests))
		for i, d := range digests {
			e := promotion(repo, d, stage)
			e.Index, e.Time, e.Set = next+uint64(i), t0.Add(time.Duration(next)*time.Second), set
			es[i] = &e
		}
		return es, nil
	}
}

func setReceipt(t *testing.T, stage string, rcs []ledger.Receipt) ledger.SetReceipt {
	t.Helper()
	sr := ledger.SetReceipt{Stage: stage, Receipts: slices.Clone(rcs)}
	for _, rc := range rcs {
		sr.Members = append(sr.Members, ledger.SetMember{Repository: rc.Entry.Repository, Digest: rc.Entry.Digest, LedgerIndex: rc.Entry.Index})
	}
	return sr
}

// TestAppendAll: the entries of one call land together with one checkpoint,
// and a call with one bad entry writes none of them.
func TestAppendAll(t *testing.T) {
	l, v := ledgertest.New(t)
	mustAppend(t, l, promotion("r", digest(9), "dev"))
	rcs, err := l.AppendAll(setOf("r", "prod", digest(1), digest(2), digest(3)))
	if err != nil {
		t.Fatal(err)
	}
	if len(rcs) != 3 || rcs[0].Entry.Index != 1 || rcs[2].Entry.Index != 3 {
		t.Fatalf("receipts %+v, want entries 1..3", rcs)
	}
	for _, rc := range rcs {
		if rc.Checkpoint != rcs[0].Checkpoint || rc.Inclusion.TreeSize != 4 {
			t.Errorf("entry %d proved at size %d, want every entry at the one checkpoint of size 4", rc.Entry.Index, rc.Inclusion.TreeSize)
		}
		if st, _, _ := l.State(rc.Entry.Digest, "prod"); !st.Active() {
			t.Errorf("%s not active in prod", rc.Entry.Digest)
		}
	}
	if err := ledger.VerifySetReceipt(setReceipt(t, "prod", rcs), v, nil); err != nil {
		t.Fatal(err)
	}

	bad := func(r ledger.Reader, next uint64) ([]*ledger.Entry, error) {
		es, _ := setOf("r", "prod", digest(4), digest(5))(r, next)
		es[1].Stage = "" // invalid: a promotion needs a stage
		return es, nil
	}
	if _, err := l.AppendAll(bad); err == nil || !strings.Contains(err.Error(), "needs a stage") {
		t.Fatalf("AppendAll of a bad second entry: %v, want it refused", err)
	}
	refused := errors.New("policy says no")
	if _, err := l.AppendAll(func(ledger.Reader, uint64) ([]*ledger.Entry, error) { return nil, refused }); !errors.Is(err, refused) {
		t.Fatalf("a refusing build: %v", err)
	}
	if n, _ := l.Size(); n != 4 {
		t.Fatalf("size %d after refused sets, want 4", n)
	}
	if st, known, _ := l.State(digest(4), "prod"); known || st.Active() {
		t.Fatal("the first entry of a refused set was recorded")
	}
	if err := l.Verify(v, nil); err != nil {
		t.Fatal(err)
	}
}

// TestVerifySetReceipt: a set receipt with a member left out, swapped,
// taken from another set or proved at another checkpoint does not verify,
// and the error says which.
func TestVerifySetReceipt(t *testing.T) {
	l, v := ledgertest.New(t)
	a, err := l.AppendAll(setOf("r", "prod", digest(1), digest(2)))
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AppendAll(setOf("r", "prod", digest(3), digest(4)))
	if err != nil {
		t.Fatal(err)
	}
	later, err := l.Receipts([]uint64{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		sr   func() ledger.SetReceipt
		want string // "" verifies
	}{
		"as returned":        {sr: func() ledger.SetReceipt { return setReceipt(t, "prod", a) }},
		"proved again later": {sr: func() ledger.SetReceipt { return setReceipt(t, "prod", later) }},
		"a member left out": {
			sr:   func() ledger.SetReceipt { return setReceipt(t, "prod", a[:1]) },
			want: "recorded in a set of 2 members",
		},
		"a member of another set": {
			sr:   func() ledger.SetReceipt { return setReceipt(t, "prod", []ledger.Receipt{later[0], b[0]}) },
			want: "do not match",
		},
		"proved at two checkpoints": {
			sr:   func() ledger.SetReceipt { return setReceipt(t, "prod", []ledger.Receipt{a[0], later[1]}) },
			want: "another checkpoint",
		},
		"members and receipts disagree": {
			sr: func() ledger.SetReceipt {
				sr := setReceipt(t, "prod", a)
				sr.Members[0], sr.Members[1] = sr.Members[1], sr.Members[0]
				return sr
			},
			want: "but its receipt is of",
		},
		"another stage": {
			sr:   func() ledger.SetReceipt { return setReceipt(t, "dev", a) },
			want: `not a promotion to "dev"`,
		},
		"an edited entry": {
			sr: func() ledger.SetReceipt {
				sr := setReceipt(t, "prod", a)
				sr.Receipts[1].Entry.Subject = "mallory"
				return sr
			},
			want: "member 2",
		},
		"empty": {sr: func() ledger.SetReceipt { return ledger.SetReceipt{Stage: "prod"} }, want: "no receipts"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := ledger.VerifySetReceipt(tc.sr(), v, nil)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("does not verify: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("error %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestSetEntryValidated: an entry whose set leaves it out, or names a
// digest twice, is refused before it is written.
func TestSetEntryValidated(t *testing.T) {
	l, _ := ledgertest.New(t)
	for name, set := range map[string][]ledger.SetMember{
		"leaves the entry out": {{Repository: "r", Digest: digest(2), LedgerIndex: 1}},
		"a digest twice":       {{Repository: "r", Digest: digest(1), LedgerIndex: 0}, {Repository: "r", Digest: digest(1), LedgerIndex: 1}},
		"empty":                {},
	} {
		e := promotion("r", digest(1), "prod")
		e.Set = set
		if _, err := l.Append(fixed(e)); err == nil {
			t.Errorf("%s: appended", name)
		}
	}
	if n, _ := l.Size(); n != 0 {
		t.Fatalf("size %d, want 0", n)
	}
}
