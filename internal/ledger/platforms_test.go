package ledger_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

// platformQuery is what one State look-up must answer. revokedIndex and
// revokedDigest are checked when revoked.
type platformQuery struct {
	digest, stage string
	promoted      bool
	revoked       bool
	revokedIndex  uint64
	revokedDigest string // "" when the revocation named digest itself
}

// Digests of the cases below: indexes I, J, K and platforms P1..P3.
var (
	idxI, idxJ, idxK = digest(100), digest(200), digest(300)
	p1, p2, p3       = digest(101), digest(102), digest(103)
)

var platformCases = []struct {
	name    string
	entries []ledger.Entry
	queries []platformQuery
}{
	{
		name: "revoking a platform from the stage revokes its index there",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "dev", p1, p2),
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, "prod"),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, p1},
			{p1, "prod", true, true, 2, ""},
			{p2, "prod", true, false, 0, ""},
			{idxI, "dev", true, false, 0, ""},
			{p1, "dev", true, false, 0, ""},
		},
	},
	{
		name: "revoking a platform from all stages revokes its index everywhere",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "dev", p1, p2),
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, ledger.AllStages),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, p1},
			{idxI, "dev", true, true, 2, p1},
			{idxI, "test", false, true, 2, p1},
			{p2, "prod", true, false, 0, ""},
			{p2, "dev", true, false, 0, ""},
		},
	},
	{
		name: "a platform's revocation reaches every index that contains it",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			promotion("reg/app", idxJ, "prod", p1, p3),
			revocation("reg/app", p1, "prod"),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, p1},
			{idxJ, "prod", true, true, 2, p1},
			{p2, "prod", true, false, 0, ""},
			{p3, "prod", true, false, 0, ""},
		},
	},
	{
		name: "revoking an index reaches the indexes sharing its platforms, not their other platforms",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			promotion("reg/app", idxJ, "prod", p1, p3),
			revocation("reg/app", idxI, "prod"),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, ""},
			{p1, "prod", true, true, 2, idxI},
			{p2, "prod", true, true, 2, idxI},
			{idxJ, "prod", true, true, 2, idxI},
			{p3, "prod", true, false, 0, ""},
		},
	},
	{
		name: "a revocation climbs nested indexes",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1),
			promotion("reg/app", idxK, "prod", idxI),
			revocation("reg/app", p1, "prod"),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, p1},
			{idxK, "prod", true, true, 2, p1},
		},
	},
	{
		name: "an index promoted after its platform was revoked is revoked by it",
		entries: []ledger.Entry{
			promotion("reg/app", p1, "prod"),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", idxI, "prod", p1, p2),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 1, p1},
			{p1, "prod", true, true, 1, ""},
			{p2, "prod", true, false, 0, ""},
		},
	},
	{
		name: "an index promoted after its platform was revoked from all stages is revoked by it",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "dev", p1, p2),
			revocation("reg/app", p1, ledger.AllStages),
			promotion("reg/app", idxI, "test", p1, p2),
		},
		queries: []platformQuery{
			{idxI, "test", true, true, 1, p1},
			{idxI, "dev", true, true, 1, p1},
			{p1, "test", true, true, 1, ""},
			{p2, "test", true, false, 0, ""},
		},
	},
	{
		name: "promoting the index again does not lift its platform's revocation",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", idxI, "prod", p1, p2),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 1, p1},
			{p1, "prod", true, true, 1, ""},
			{p2, "prod", true, false, 0, ""},
		},
	},
	{
		name: "a blocked index blocks the indexes that contain it",
		entries: []ledger.Entry{
			promotion("reg/app", idxK, "prod", idxI),
			promotion("reg/app", p1, "prod"),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", idxI, "prod", p1),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 2, p1},
			{idxK, "prod", true, true, 2, p1},
		},
	},
	{
		name: "promoting the platform, then the index, lifts it",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", p1, "prod"),
			promotion("reg/app", idxI, "prod", p1, p2),
		},
		queries: []platformQuery{
			{idxI, "prod", true, false, 0, ""},
			{p1, "prod", true, false, 0, ""},
		},
	},
	{
		name: "promoting the platform alone leaves the index revoked",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", p1, "prod"),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 1, p1},
			{p1, "prod", true, false, 0, ""},
		},
	},
	{
		name: "promoting a revoked index again lifts what its revocation reached",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", idxI, "prod"),
			promotion("reg/app", idxI, "prod", p1, p2),
		},
		queries: []platformQuery{
			{idxI, "prod", true, false, 0, ""},
			{p1, "prod", true, false, 0, ""},
			{p2, "prod", true, false, 0, ""},
		},
	},
	{
		name: "a later revocation of the index itself wins",
		entries: []ledger.Entry{
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", p1, "prod"),
			promotion("reg/app", idxI, "prod", p1, p2),
			revocation("reg/app", idxI, ledger.AllStages),
		},
		queries: []platformQuery{
			{idxI, "prod", true, true, 3, ""},
			{p2, "prod", true, true, 3, idxI},
		},
	},
}

// checkPlatformQueries asks state for every query.
func checkPlatformQueries(t *testing.T, how string, qs []platformQuery, state func(d, stage string) (ledger.State, bool)) {
	t.Helper()
	for _, q := range qs {
		st, known := state(q.digest, q.stage)
		if !known || st.Promoted != q.promoted || st.Revoked != q.revoked || st.Active() != (q.promoted && !q.revoked) {
			t.Errorf("%s: State(%s, %s) = known %v promoted %v revoked %v; want promoted %v revoked %v",
				how, short(q.digest), q.stage, known, st.Promoted, st.Revoked, q.promoted, q.revoked)
			continue
		}
		if q.revoked && (st.RevokedIndex != q.revokedIndex || st.RevokedDigest != q.revokedDigest || st.RevokeReason != "CVE" || st.RevokedBy != "sec@example.com") {
			t.Errorf("%s: State(%s, %s) revoked by entry %d of %q (%q by %q); want entry %d of %q",
				how, short(q.digest), q.stage, st.RevokedIndex, st.RevokedDigest, st.RevokeReason, st.RevokedBy, q.revokedIndex, q.revokedDigest)
		}
	}
}

func short(d string) string { return strings.TrimLeft(strings.TrimPrefix(d, "sha256:"), "0") }

// TestPlatformRevocationReachesIndexes checks every case through every way
// the state index is made: appends (through the state cache, warmed with
// the old answers before each write, and past it), Verify's rebuild, an
// import, and one bulk append.
func TestPlatformRevocationReachesIndexes(t *testing.T) {
	for _, tt := range platformCases {
		t.Run(tt.name, func(t *testing.T) {
			for _, size := range []int{ledger.DefaultStateCache, 1} {
				l, v := ledgertest.New(t, ledger.WithStateCache(size))
				for _, e := range tt.entries {
					for _, q := range tt.queries {
						_, _, _ = l.State(q.digest, q.stage) // warm the cache with the old answer
					}
					mustAppend(t, l, e)
				}
				checkPlatformQueries(t, "cached", tt.queries, func(d, s string) (ledger.State, bool) {
					st, ok, err := l.State(d, s)
					if err != nil {
						t.Fatal(err)
					}
					return st, ok
				})
				checkPlatformQueries(t, "file", tt.queries, func(d, s string) (ledger.State, bool) { return fileState(t, l, d, s) })
				if err := l.Verify(v, nil); err != nil {
					t.Fatalf("Verify: %v", err)
				}
				if size != ledger.DefaultStateCache {
					continue
				}
				imported, _ := ledgertest.New(t)
				if err := imported.Import(bytes.NewReader(exportOf(t, l)), v, nil); err != nil {
					t.Fatalf("Import: %v", err)
				}
				checkPlatformQueries(t, "imported", tt.queries, func(d, s string) (ledger.State, bool) { return fileState(t, imported, d, s) })

				bulk, bv := ledgertest.New(t)
				var batch []*ledger.Entry
				for i := range tt.entries {
					e := tt.entries[i]
					e.Index, e.Time = uint64(i), t0.Add(time.Duration(i)*time.Second)
					batch = append(batch, &e)
				}
				bulkLoad(t, bulk, nil, batch...)
				checkPlatformQueries(t, "bulk", tt.queries, func(d, s string) (ledger.State, bool) { return fileState(t, bulk, d, s) })
				if err := bulk.Verify(bv, nil); err != nil {
					t.Fatalf("Verify of the bulk-loaded ledger: %v", err)
				}
			}
		})
	}
}

// TestPlatformRevocationVerifiesAcrossChunks puts more entries between the
// platform's revocation and the index's promotion than Verify rebuilds in
// one chunk, so that the rebuilt index carries a revocation mark out of
// its sealed store into the index's record.
func TestPlatformRevocationVerifiesAcrossChunks(t *testing.T) {
	l, v := ledgertest.New(t)
	first, second := promotion("reg/app", p1, "prod"), revocation("reg/app", p1, "prod")
	first.Time, second.Index, second.Time = t0, 1, t0.Add(time.Second)
	batch := []*ledger.Entry{&first, &second}
	const filler = 5000
	for i := range filler {
		e := promotion("reg/other", digest(10000+i), "dev")
		e.Index, e.Time = uint64(2+i), t0
		batch = append(batch, &e)
	}
	bulkLoad(t, l, nil, batch...)
	mustAppend(t, l, promotion("reg/app", idxI, "prod", p1, p2))
	mustAppend(t, l, revocation("reg/app", p2, ledger.AllStages))
	checkPlatformQueries(t, "file", []platformQuery{
		{idxI, "prod", true, true, 2 + filler + 1, p2},
		{p1, "prod", true, true, 1, ""},
	}, func(d, s string) (ledger.State, bool) { return fileState(t, l, d, s) })
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// TestPlatformLabels: each platform's state carries its own labels when
// the entry says them, and the index's labels when it does not (entries
// made before PlatformLabels existed).
func TestPlatformLabels(t *testing.T) {
	withOwn := promotion("reg/app", idxI, "prod", p1, p2, p3)
	withOwn.Labels = map[string]string{"team": "a"}
	withOwn.PlatformLabels = map[string]map[string]string{
		p1: {"team": "a", "arch": "amd64"},
		p2: {"team": "a", "arch": "arm64"},
	}
	old := promotion("reg/app", idxJ, "prod", p1)
	tests := []struct {
		name    string
		entries []ledger.Entry
		want    map[string]map[string]string // digest -> labels in prod
	}{
		{"own labels", []ledger.Entry{withOwn}, map[string]map[string]string{
			idxI: {"team": "a"},
			p1:   {"team": "a", "arch": "amd64"},
			p2:   {"team": "a", "arch": "arm64"},
			p3:   nil, // a platform without labels has none, not the index's
		}},
		{"entry without platform labels", []ledger.Entry{old}, map[string]map[string]string{
			idxJ: {"team": "a"},
			p1:   {"team": "a"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, v := ledgertest.New(t)
			for _, e := range tt.entries {
				mustAppend(t, l, e)
			}
			imported, _ := ledgertest.New(t)
			if err := imported.Import(bytes.NewReader(exportOf(t, l)), v, nil); err != nil {
				t.Fatalf("Import: %v", err)
			}
			for d, want := range tt.want {
				for how, lg := range map[string]*ledger.Ledger{"appended": l, "imported": imported} {
					st, _, err := lg.State(d, "prod")
					if err != nil || !st.Active() {
						t.Fatalf("%s: State(%s) = %+v, %v", how, short(d), st, err)
					}
					if !equalLabels(st.Labels, want) {
						t.Errorf("%s: labels of %s = %v, want %v", how, short(d), st.Labels, want)
					}
				}
			}
			if err := l.Verify(v, nil); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func equalLabels(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestPlatformLabelsEncoding: an entry without platform labels keeps the
// bytes it always had, and labels for a digest the entry does not promote
// as a platform are refused.
func TestPlatformLabelsEncoding(t *testing.T) {
	raw, err := json.Marshal(promotion("reg/app", idxI, "prod", p1))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("platformLabels")) {
		t.Fatalf("an entry without platform labels names them: %s", raw)
	}
	tests := map[string]func(*ledger.Entry){
		"labels for a digest that is not a platform": func(e *ledger.Entry) {
			e.PlatformLabels = map[string]map[string]string{p2: {"a": "b"}}
		},
		"labels for the index's own digest": func(e *ledger.Entry) {
			e.Platforms = append(e.Platforms, idxI)
			e.PlatformLabels = map[string]map[string]string{idxI: {"a": "b"}}
		},
		"labels in a revocation": func(e *ledger.Entry) {
			e.Kind = ledger.KindRevocation
			e.PlatformLabels = map[string]map[string]string{p1: {"a": "b"}}
		},
	}
	for name, edit := range tests {
		t.Run(name, func(t *testing.T) {
			l, _ := ledgertest.New(t)
			e := promotion("reg/app", idxI, "prod", p1)
			edit(&e)
			if _, err := l.Append(fixed(e)); err == nil || !strings.Contains(err.Error(), "invalid entry") {
				t.Fatalf("Append: %v, want an invalid entry", err)
			}
		})
	}
}
