package ledger_test

import (
	"slices"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

func request(repo, d, stage string) ledger.Entry {
	return ledger.Entry{Kind: ledger.KindRequest, Repository: repo, Digest: d, Stage: stage, Subject: "ci"}
}

func answer(kind ledger.Kind, repo, d, stage string, req uint64, by string) ledger.Entry {
	return ledger.Entry{Kind: kind, Repository: repo, Digest: d, Stage: stage, Subject: by, Request: &req}
}

// TestRequestHistory: a stage's requests and each request's answers are
// found by their history names, on the written ledger and in a build's
// ViewPending alike (a group commit on a replicated leader); a request
// that names a request, or an answer that names none, is refused.
func TestRequestHistory(t *testing.T) {
	leader, replica, v := replicaPair(t)
	written := built(t, 0, promotion("r/a", digest(1), "dev"), request("r/a", digest(1), "prod"))
	cp, err := leader.Seal(written, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []*ledger.Ledger{leader, replica} {
		if err := l.ApplyReplicated(written, cp, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	pending := built(t, 2, answer(ledger.KindApproval, "r/a", digest(1), "prod", 1, "alice"), request("r/b", digest(2), "prod"),
		answer(ledger.KindRejection, "r/b", digest(2), "prod", 3, "bob"))
	indexes := func(es []ledger.Entry) []uint64 {
		var out []uint64
		for _, e := range es {
			out = append(out, e.Index)
		}
		return out
	}
	want := map[string][]uint64{
		ledger.RequestsName("prod"): {1, 3},
		ledger.RequestsName("dev"):  nil,
		ledger.RequestName(1):       {1, 2},
		ledger.RequestName(3):       {3, 4},
	}
	if err := leader.ViewPending(pending, func(r ledger.Reader) error {
		hr := r.(ledger.HistoryReader)
		for name, w := range want {
			page, more, err := hr.HistoryPage(name, 0, 0, 0)
			if err != nil {
				return err
			}
			if got := indexes(page); !slices.Equal(got, w) || more {
				t.Errorf("pending view of %s = %v (more %v), want %v", name, got, more, w)
			}
		}
		page, more, err := hr.HistoryPage(ledger.RequestsName("prod"), 0, 1, 0)
		if err != nil || !more || len(page) != 1 || page[0].Index != 1 {
			t.Errorf("first page of 1: %v, more %v, %v", indexes(page), more, err)
		}
		page, _, err = hr.HistoryPage(ledger.RequestsName("prod"), 2, 0, 0)
		if err != nil || !slices.Equal(indexes(page), []uint64{3}) {
			t.Errorf("from 2: %v, %v", indexes(page), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cp, err = leader.Seal(pending, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := replica.ApplyReplicated(pending, cp, v, nil); err != nil {
		t.Fatal(err)
	}
	for name, w := range want {
		page, _, err := replica.HistoryPage(name, 0, 0, 0)
		if err != nil || !slices.Equal(indexes(page), w) {
			t.Errorf("written %s = %v, %v, want %v", name, indexes(page), err, w)
		}
	}

	for name, e := range map[string]ledger.Entry{
		"request naming a request": answer(ledger.KindRequest, "r/a", digest(1), "prod", 1, "ci"),
		"approval naming none":     {Kind: ledger.KindApproval, Repository: "r/a", Digest: digest(1), Stage: "prod", Subject: "alice"},
		"request to every stage":   request("r/a", digest(1), ledger.AllStages),
	} {
		if _, err := replica.Append(fixed(e)); err == nil {
			t.Errorf("%s: appended", name)
		}
	}
}
