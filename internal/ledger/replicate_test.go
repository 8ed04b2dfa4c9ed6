package ledger_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"golang.org/x/mod/sumdb/note"
)

// replicaPair opens two ledgers under one log key: a leader that seals and
// a replica that applies.
func replicaPair(t *testing.T) (leader, replica *ledger.Ledger, v note.Verifier) {
	t.Helper()
	s, ver := ledgertest.Keys(t, ledgertest.Origin)
	open := func(name string) *ledger.Ledger {
		l, err := ledger.Open(filepath.Join(t.TempDir(), name), ledger.WithSigner(s), ledger.WithNoSync())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	return open("leader.db"), open("replica.db"), ver
}

// built returns the entries fixed makes at index from, onward.
func built(t *testing.T, from uint64, es ...ledger.Entry) []*ledger.Entry {
	t.Helper()
	out := make([]*ledger.Entry, len(es))
	for i, e := range es {
		var err error
		if out[i], err = fixed(e)(nil, from+uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// refuseSubject stands in for the attestation check: it refuses entries
// by "mallory".
func refuseSubject(e ledger.Entry) error {
	if e.Subject == "mallory" {
		return errors.New("attestation does not match")
	}
	return nil
}

func TestApplyReplicatedMatchesLeader(t *testing.T) {
	leader, replica, v := replicaPair(t)
	var firstEntries []*ledger.Entry
	var firstCP string
	for _, batch := range [][]ledger.Entry{
		{promotion("r/a", digest(1), "dev"), promotion("r/a", digest(2), "dev")},
		{revocation("r/a", digest(1), ledger.AllStages)},
	} {
		size, _ := leader.Size()
		es := built(t, size, batch...)
		cp, err := leader.Seal(es, nil)
		if err != nil {
			t.Fatalf("Seal: %v", err)
		}
		if firstEntries == nil {
			firstEntries, firstCP = es, cp
		}
		for name, l := range map[string]*ledger.Ledger{"leader": leader, "replica": replica} {
			if err := l.ApplyReplicated(es, cp, v, refuseSubject); err != nil {
				t.Fatalf("%s: ApplyReplicated: %v", name, err)
			}
		}
	}
	lcp, _ := leader.Checkpoint()
	rcp, _ := replica.Checkpoint()
	if lcp != rcp {
		t.Fatalf("checkpoints differ:\n%s\n%s", lcp, rcp)
	}
	if !bytes.Equal(exportOf(t, leader), exportOf(t, replica)) {
		t.Fatal("exports differ")
	}
	if err := replica.Verify(v, refuseSubject); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	st, ok, err := replica.State(digest(1), "dev")
	if err != nil || !ok || !st.Revoked || st.Active() {
		t.Fatalf("state of revoked digest: %+v %v %v", st, ok, err)
	}
	if st, ok, _ := replica.State(digest(2), "dev"); !ok || !st.Active() {
		t.Fatalf("state of promoted digest: %+v %v", st, ok)
	}
	// A replayed log applies what is already stored: accepted, unchanged.
	if err := replica.ApplyReplicated(firstEntries, firstCP, v, nil); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if cp, _ := replica.Checkpoint(); cp != rcp {
		t.Fatal("replay changed the checkpoint")
	}
}

func TestApplyReplicatedRefusesWritingNothing(t *testing.T) {
	leader, replica, v := replicaPair(t)
	es := built(t, 0, promotion("r/a", digest(1), "dev"))
	cp, err := leader.Seal(es, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.ApplyReplicated(es, cp, v, refuseSubject); err != nil {
		t.Fatal(err)
	}
	if err := leader.ApplyReplicated(es, cp, v, refuseSubject); err != nil {
		t.Fatal(err)
	}
	before, _ := replica.Checkpoint()
	next := built(t, 1, promotion("r/a", digest(2), "dev"), promotion("r/a", digest(3), "dev"))
	if _, err := leader.Seal(built(t, 1, promotion("r/a", digest(2), "dev"), func() ledger.Entry {
		e := promotion("r/a", digest(3), "dev")
		e.Subject = "mallory"
		return e
	}()), refuseSubject); err == nil || !strings.Contains(err.Error(), "entry 2: replicate: entry check failed") {
		t.Fatalf("Seal of an entry that fails its check: %v", err)
	}
	good, err := leader.Seal(next, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := leader.Seal(built(t, 1, promotion("r/a", digest(4), "dev"), promotion("r/a", digest(3), "dev")), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreignLeader, _, _ := replicaPair(t)
	foreign, err := foreignLeader.Seal(built(t, 0, promotion("r/a", digest(2), "dev"), promotion("r/a", digest(3), "dev"), promotion("r/a", digest(5), "dev")), nil)
	if err != nil {
		t.Fatal(err)
	}
	tampered := func(f func(*ledger.Entry)) []*ledger.Entry {
		out := built(t, 1, promotion("r/a", digest(2), "dev"), promotion("r/a", digest(3), "dev"))
		f(out[1])
		return out
	}
	tests := map[string]struct {
		entries    []*ledger.Entry
		checkpoint string
		want       string
	}{
		"entry fails its check": {
			entries:    tampered(func(e *ledger.Entry) { e.Subject = "mallory" }),
			checkpoint: good, want: "entry 2: replicate: entry check failed",
		},
		"edited entry changes the root": {
			entries:    tampered(func(e *ledger.Entry) { e.Reason = "edited" }),
			checkpoint: good, want: "lead to root",
		},
		"checkpoint root differs": {
			entries: next, checkpoint: other, want: "but the leader's checkpoint at size 3 says",
		},
		"checkpoint of another key": {
			entries: next, checkpoint: foreign, want: "checkpoint",
		},
		"checkpoint for another size": {
			entries:    built(t, 1, promotion("r/a", digest(2), "dev")),
			checkpoint: good, want: "checkpoint is for size 3, but the entries end at 2",
		},
		"gap": {
			entries:    built(t, 2, promotion("r/a", digest(3), "dev"), promotion("r/a", digest(6), "dev")),
			checkpoint: foreignSized(t, leader), want: "entries start at 2, but the ledger has 1",
		},
		"invalid entry": {
			entries:    tampered(func(e *ledger.Entry) { e.Stage = ledger.AllStages }),
			checkpoint: good, want: "entry 2: replicate: invalid",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := replica.ApplyReplicated(tc.entries, tc.checkpoint, v, refuseSubject)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ApplyReplicated: %v, want an error containing %q", err, tc.want)
			}
			if after, _ := replica.Checkpoint(); after != before {
				t.Fatal("checkpoint changed")
			}
			if size, _ := replica.Size(); size != 1 {
				t.Fatalf("size %d after a refused apply, want 1", size)
			}
			for _, d := range []int{2, 3, 4, 6} {
				if _, ok, _ := replica.State(digest(d), "dev"); ok {
					t.Fatalf("state of %s written", digest(d))
				}
			}
		})
	}
	if err := replica.Verify(v, refuseSubject); err != nil {
		t.Fatalf("Verify after refusals: %v", err)
	}
}

// foreignSized returns a checkpoint of size 4 under the leader's key: the
// gap case must get past the size check to meet the index check.
func foreignSized(t *testing.T, leader *ledger.Ledger) string {
	t.Helper()
	cp, err := leader.Seal(built(t, 1, promotion("r/a", digest(7), "dev"), promotion("r/a", digest(8), "dev"), promotion("r/a", digest(9), "dev")), nil)
	if err != nil {
		t.Fatal(err)
	}
	return cp
}
