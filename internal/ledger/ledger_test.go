package ledger_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func TestAppendAndRead(t *testing.T) {
	l, v := ledgertest.New(t)
	if _, err := l.Checkpoint(); !errors.Is(err, ledger.ErrEmpty) {
		t.Fatalf("Checkpoint of empty ledger: %v, want ErrEmpty", err)
	}
	want := []ledger.Entry{
		promotion("reg/app", digest(1), "dev"),
		promotion("reg/app", digest(1), "prod"),
		revocation("reg/app", digest(1), "prod"),
	}
	for i, e := range want {
		rc := mustAppend(t, l, e)
		if rc.Entry.Index != uint64(i) || rc.Inclusion.TreeSize != uint64(i+1) {
			t.Fatalf("receipt %d: index %d size %d", i, rc.Entry.Index, rc.Inclusion.TreeSize)
		}
		if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
			t.Fatalf("receipt %d: %v", i, err)
		}
	}
	size, err := l.Size()
	if err != nil || size != 3 {
		t.Fatalf("Size = %d, %v; want 3", size, err)
	}
	got, err := l.Entries(1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Index != 1 || got[1].Kind != ledger.KindRevocation {
		t.Fatalf("Entries(1,10) = %+v", got)
	}
	if got, _ := l.Entries(0, 1); len(got) != 1 {
		t.Fatalf("Entries(0,1) returned %d entries", len(got))
	}
	if got, _ := l.Entries(3, 1); len(got) != 0 {
		t.Fatalf("Entries(3,1) returned %d entries", len(got))
	}
	if _, err := l.Entries(4, 1); !errors.Is(err, ledger.ErrOutOfRange) {
		t.Fatalf("Entries(4,1): %v, want ErrOutOfRange", err)
	}
	text, err := l.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := ledger.ParseCheckpoint(text, v)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 3 || cp.Origin != ledgertest.Origin {
		t.Fatalf("checkpoint = %+v", cp)
	}
	if _, err := l.Receipt(3); !errors.Is(err, ledger.ErrNotFound) {
		t.Fatalf("Receipt(3): %v, want ErrNotFound", err)
	}
	err = l.View(func(r ledger.Reader) error {
		e, err := r.Entry(2)
		if err != nil || e.Stage != "prod" || e.Kind != ledger.KindRevocation {
			t.Errorf("Reader.Entry(2) = %+v, %v", e, err)
		}
		if _, err := r.Entry(9); !errors.Is(err, ledger.ErrNotFound) {
			t.Errorf("Reader.Entry(9): %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Verify(v, nil); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if err := l.VerifyTail(v, 2); err != nil {
		t.Fatalf("VerifyTail: %v", err)
	}
}

func TestState(t *testing.T) {
	type query struct {
		digest, stage string
		known         bool
		promoted      bool
		revoked       bool
		promotedIndex uint64
	}
	bg := ledger.Entry{Kind: ledger.KindBreakGlass, Repository: "reg/app", Digest: digest(1), Stage: "prod", Workload: "ns/Pod/x", Images: []string{"reg/app@" + digest(1)}}
	tests := []struct {
		name    string
		entries []ledger.Entry
		queries []query
	}{
		{
			name:    "unknown digest",
			queries: []query{{digest: digest(1), stage: "prod"}},
		},
		{
			name:    "promotion is per stage",
			entries: []ledger.Entry{promotion("reg/app", digest(1), "test")},
			queries: []query{
				{digest(1), "test", true, true, false, 0},
				{digest(1), "prod", true, false, false, 0},
			},
		},
		{
			name: "stage revocation",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "test"),
				promotion("reg/app", digest(1), "prod"),
				revocation("reg/app", digest(1), "prod"),
			},
			queries: []query{
				{digest(1), "test", true, true, false, 0},
				{digest(1), "prod", true, true, true, 1},
			},
		},
		{
			name: "revocation of all stages",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "test"),
				promotion("reg/app", digest(1), "prod"),
				revocation("reg/app", digest(1), ledger.AllStages),
			},
			queries: []query{
				{digest(1), "test", true, true, true, 0},
				{digest(1), "prod", true, true, true, 1},
				{digest(1), "dev", true, false, true, 0},
			},
		},
		{
			name: "re-promotion after revocation of all stages",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "test"),
				promotion("reg/app", digest(1), "prod"),
				revocation("reg/app", digest(1), ledger.AllStages),
				promotion("reg/app", digest(1), "prod"),
			},
			queries: []query{
				{digest(1), "prod", true, true, false, 3},
				{digest(1), "test", true, true, true, 0},
			},
		},
		{
			name: "stage revocation after all-stage revocation and re-promotion",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "prod"),
				revocation("reg/app", digest(1), ledger.AllStages),
				promotion("reg/app", digest(1), "prod"),
				revocation("reg/app", digest(1), "prod"),
			},
			queries: []query{{digest(1), "prod", true, true, true, 2}},
		},
		{
			name: "platform digests follow their index",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "prod", digest(11), digest(12)),
			},
			queries: []query{
				{digest(1), "prod", true, true, false, 0},
				{digest(11), "prod", true, true, false, 0},
				{digest(12), "prod", true, true, false, 0},
				{digest(12), "test", true, false, false, 0},
			},
		},
		{
			name: "revoking an index revokes its platforms",
			entries: []ledger.Entry{
				promotion("reg/app", digest(1), "prod", digest(11), digest(12)),
				revocation("reg/app", digest(1), ledger.AllStages),
			},
			queries: []query{
				{digest(11), "prod", true, true, true, 0},
				{digest(12), "prod", true, true, true, 0},
			},
		},
		{
			name:    "break-glass changes no state",
			entries: []ledger.Entry{bg},
			queries: []query{{digest: digest(1), stage: "prod"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, v := ledgertest.New(t)
			for _, e := range tt.entries {
				mustAppend(t, l, e)
			}
			for _, q := range tt.queries {
				st, known, err := l.State(q.digest, q.stage)
				if err != nil {
					t.Fatal(err)
				}
				if known != q.known || st.Promoted != q.promoted || st.Revoked != q.revoked {
					t.Errorf("State(%s, %s) = known %v promoted %v revoked %v; want %v %v %v",
						q.digest[:10], q.stage, known, st.Promoted, st.Revoked, q.known, q.promoted, q.revoked)
				}
				if st.Active() != (q.promoted && !q.revoked) {
					t.Errorf("State(%s, %s).Active() = %v", q.digest[:10], q.stage, st.Active())
				}
				if q.promoted && (st.PromotedIndex != q.promotedIndex || st.Repository != "reg/app" || st.PromotedBy != "ci@example.com" || st.Labels["team"] != "a") {
					t.Errorf("State(%s, %s) = %+v", q.digest[:10], q.stage, st)
				}
				if st.Digest != q.digest || st.Stage != q.stage {
					t.Errorf("State names %s/%s, want %s/%s", st.Digest, st.Stage, q.digest, q.stage)
				}
				// The Reader inside a transaction must agree.
				_ = l.View(func(r ledger.Reader) error {
					rst, rknown, err := r.State(q.digest, q.stage)
					if err != nil || rknown != known || rst.Active() != st.Active() {
						t.Errorf("Reader.State disagrees with Ledger.State")
					}
					return nil
				})
			}
			// Verify rebuilds the state index and must agree with it.
			if err := l.Verify(v, nil); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestStateDetails(t *testing.T) {
	l, _ := ledgertest.New(t)
	mustAppend(t, l, promotion("reg/app", digest(1), "prod"))
	mustAppend(t, l, revocation("reg/app", digest(1), ledger.AllStages))
	st, _, err := l.State(digest(1), "prod")
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.State{
		Digest: digest(1), Repository: "reg/app", Stage: "prod",
		Promoted: true, PromotedIndex: 0, PromotedAt: t0, PromotedBy: "ci@example.com",
		Revoked: true, RevokedIndex: 1, RevokedAt: t0.Add(time.Second), RevokedBy: "sec@example.com", RevokeReason: "CVE",
		Labels: map[string]string{"team": "a"},
	}
	if !st.PromotedAt.Equal(want.PromotedAt) || !st.RevokedAt.Equal(want.RevokedAt) {
		t.Fatalf("times: %v %v", st.PromotedAt, st.RevokedAt)
	}
	st.PromotedAt, st.RevokedAt, want.PromotedAt, want.RevokedAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("State =\n%+v\nwant\n%+v", st, want)
	}
}

func TestHistory(t *testing.T) {
	l, _ := ledgertest.New(t)
	mustAppend(t, l, promotion("reg/app", digest(1), "dev", digest(11)))
	mustAppend(t, l, promotion("reg/other", digest(2), "dev"))
	mustAppend(t, l, promotion("reg/app", digest(1), "prod", digest(11)))
	mustAppend(t, l, revocation("reg/app", digest(1), "prod"))
	mustAppend(t, l, promotion("reg/app-x", digest(3), "dev"))
	mustAppend(t, l, ledger.Entry{Kind: ledger.KindBreakGlass, Workload: "ns/Pod/x", Images: []string{"reg/x@" + digest(4)}})
	tests := []struct {
		name string
		key  string
		want []uint64
	}{
		{"repository", "reg/app", []uint64{0, 2, 3}},
		{"repository prefix does not match", "reg/ap", nil},
		{"other repository", "reg/other", []uint64{1}},
		{"digest", digest(1), []uint64{0, 2, 3}},
		{"platform digest", digest(11), []uint64{0, 2}},
		{"break-glass image digest", digest(4), []uint64{5}},
		{"unknown", digest(9), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.History(tt.key)
			if err != nil {
				t.Fatal(err)
			}
			var idx []uint64
			for _, e := range got {
				idx = append(idx, e.Index)
			}
			if !slices.Equal(idx, tt.want) {
				t.Fatalf("History(%q) = %v, want %v", tt.key, idx, tt.want)
			}
		})
	}
}

func TestConcurrentAppendIsIdempotent(t *testing.T) {
	l, v := ledgertest.New(t)
	build := func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		if st, _, err := r.State(digest(1), "prod"); err != nil {
			return nil, err
		} else if st.Active() {
			return nil, &ledger.ExistsError{Index: st.PromotedIndex}
		}
		return fixed(promotion("reg/app", digest(1), "prod"))(r, index)
	}
	const n = 50
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		created  int
		existing int
	)
	for range n {
		wg.Go(func() {
			rc, err := l.Append(build)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case errors.Is(err, ledger.ErrExists):
				existing++
				if rc.Entry.Index != 0 || rc.Entry.Digest != digest(1) {
					t.Errorf("existing receipt names entry %d %s", rc.Entry.Index, rc.Entry.Digest)
				}
				if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
					t.Errorf("existing receipt: %v", err)
				}
			default:
				t.Errorf("Append: %v", err)
			}
		})
	}
	wg.Wait()
	if size, _ := l.Size(); size != 1 || created != 1 || existing != n-1 {
		t.Fatalf("size %d, created %d, existing %d; want 1, 1, %d", size, created, existing, n-1)
	}
}

func TestFailedBuildWritesNothing(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name  string
		build ledger.BuildFunc
		want  error // nil: any error
	}{
		{"build error", func(ledger.Reader, uint64) (*ledger.Entry, error) { return nil, boom }, boom},
		{"nil entry", func(ledger.Reader, uint64) (*ledger.Entry, error) { return nil, nil }, nil},
		{"wrong index", func(r ledger.Reader, i uint64) (*ledger.Entry, error) {
			e, _ := fixed(promotion("reg/app", digest(2), "prod"))(r, i)
			e.Index = i + 1
			return e, nil
		}, nil},
		{"unknown kind", fixed(ledger.Entry{Kind: "bogus", Digest: digest(2), Stage: "prod"}), nil},
		{"promotion to all stages", fixed(promotion("reg/app", digest(2), ledger.AllStages)), nil},
		{"promotion without digest", fixed(promotion("reg/app", "", "prod")), nil},
		{"invalid envelope JSON", fixed(ledger.Entry{Kind: ledger.KindBreakGlass, Envelope: []byte("{")}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, v := ledgertest.New(t)
			mustAppend(t, l, promotion("reg/app", digest(1), "prod"))
			before, _ := l.Checkpoint()
			rc, err := l.Append(tt.build)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("Append error = %v, want %v", err, tt.want)
			}
			if rc.Checkpoint != "" {
				t.Errorf("failed Append returned a receipt")
			}
			after, _ := l.Checkpoint()
			if size, _ := l.Size(); size != 1 || after != before {
				t.Fatalf("size %d after failed append, checkpoint changed: %v", size, after != before)
			}
			if _, known, _ := l.State(digest(2), "prod"); known {
				t.Fatalf("failed append left state behind")
			}
			if err := l.Verify(v, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "ledger")
	path := filepath.Join(dir, "ledger.db")
	s, _ := ledgertest.Keys(t, "x")
	l, err := ledger.Open(path, ledger.WithSigner(s))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for p, want := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", p, fi.Mode().Perm(), want)
		}
	}
	if _, err := ledger.Open(path, ledger.WithLockTimeout(50*time.Millisecond)); !errors.Is(err, ledger.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
}

func TestWritesNeedSignerAndWritable(t *testing.T) {
	l, _ := ledgertest.New(t)
	mustAppend(t, l, promotion("reg/app", digest(1), "prod"))
	path := l.Path()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts []ledger.Option
		want error
	}{
		{"no signer", nil, ledger.ErrNoSigner},
		{"read-only", []ledger.Option{ledger.WithReadOnly()}, ledger.ErrReadOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := ledgertest.Keys(t, "x")
			opts := tt.opts
			if tt.want == ledger.ErrReadOnly {
				opts = append(opts, ledger.WithSigner(s))
			}
			l, err := ledger.Open(path, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if _, err := l.Append(fixed(promotion("reg/app", digest(2), "prod"))); !errors.Is(err, tt.want) {
				t.Fatalf("Append: %v, want %v", err, tt.want)
			}
			if st, _, err := l.State(digest(1), "prod"); err != nil || !st.Active() {
				t.Fatalf("reads must still work: %+v %v", st, err)
			}
		})
	}
}

func TestTimeZonesStayCanonical(t *testing.T) {
	l, v := ledgertest.New(t)
	for i, loc := range []*time.Location{time.UTC, time.Local, time.FixedZone("CET", 3600)} {
		rc, err := l.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			e := promotion("reg/app", digest(i), "dev")
			e.Index, e.Time = index, time.Now().In(loc) // with a monotonic reading
			return &e, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := ledger.VerifyReceipt(rc, v, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Verify(v, nil); err != nil {
		t.Fatal(err)
	}
}
