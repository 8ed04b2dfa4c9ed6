package ledger_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
)

func exportOf(t *testing.T, l *ledger.Ledger) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := l.Export(&buf); err != nil {
		t.Fatalf("Export: %v", err)
	}
	return buf.Bytes()
}

func TestExportImportRoundTrip(t *testing.T) {
	src, v := ledgertest.New(t)
	mustAppend(t, src, promotion("reg/app", digest(1), "dev", digest(11)))
	mustAppend(t, src, promotion("reg/app", digest(1), "prod", digest(11)))
	mustAppend(t, src, revocation("reg/app", digest(1), ledger.AllStages))
	mustAppend(t, src, ledger.Entry{Kind: ledger.KindBreakGlass, Workload: "ns/Pod/x", Images: []string{"reg/app@" + digest(1)}, Reason: "incident <42> & co"})
	data := exportOf(t, src)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 5 || !strings.HasPrefix(lines[4], `{"checkpoint":`) {
		t.Fatalf("export has %d lines, last %q", len(lines), lines[len(lines)-1])
	}

	dst, _ := ledgertest.New(t)
	var checked int
	if err := dst.Import(bytes.NewReader(data), v, func(ledger.Entry) error { checked++; return nil }); err != nil {
		t.Fatalf("Import: %v", err)
	}
	if checked != 4 {
		t.Fatalf("check called %d times", checked)
	}
	if got := exportOf(t, dst); !bytes.Equal(got, data) {
		t.Fatalf("re-export differs:\n%s\nwant\n%s", got, data)
	}
	if err := dst.Verify(v, nil); err != nil {
		t.Fatalf("Verify after import: %v", err)
	}
	for _, q := range []struct{ d, s string }{{digest(1), "prod"}, {digest(11), "dev"}, {digest(2), "prod"}} {
		a, aok, _ := src.State(q.d, q.s)
		b, bok, _ := dst.State(q.d, q.s)
		if aok != bok || !reflect.DeepEqual(a, b) {
			t.Errorf("State(%s, %s) differs after import", q.d, q.s)
		}
	}
	ha, _ := src.History(digest(1))
	hb, _ := dst.History(digest(1))
	if len(ha) != 4 || !reflect.DeepEqual(ha, hb) {
		t.Errorf("History differs after import: %d vs %d entries", len(ha), len(hb))
	}
	// The imported checkpoint is kept; the next append extends it consistently.
	old, _ := dst.Checkpoint()
	mustAppend(t, dst, promotion("reg/app", digest(2), "dev"))
	p, err := dst.ConsistencyProof(4, 5)
	if err != nil {
		t.Fatal(err)
	}
	oc, err := ledger.ParseCheckpoint(old, v)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(oc.Root, p.FromRoot) {
		t.Fatal("consistency proof does not start at the imported root")
	}

	if err := dst.Import(bytes.NewReader(data), v, nil); !errors.Is(err, ledger.ErrNotEmpty) {
		t.Fatalf("Import into a non-empty ledger: %v, want ErrNotEmpty", err)
	}
}

func TestImportRejectsTampering(t *testing.T) {
	src, v := ledgertest.New(t)
	for i := range 5 {
		mustAppend(t, src, promotion("reg/app", digest(i), "dev"))
	}
	data := string(exportOf(t, src))
	lines := strings.SplitAfter(data, "\n")
	lines = lines[:len(lines)-1] // trailing empty string
	other, _ := ledgertest.New(t)
	mustAppend(t, other, promotion("reg/app", digest(1), "dev"))
	otherCP := string(exportOf(t, other))
	otherCP = otherCP[strings.LastIndex(strings.TrimSuffix(otherCP, "\n"), "\n")+1:]
	_, otherV := ledgertest.Keys(t, ledgertest.Origin)
	refuse := errors.New("attestation refused")

	tests := []struct {
		name     string
		input    string
		otherKey bool
		check    func(ledger.Entry) error
	}{
		{"field changed", strings.Replace(data, `"stage":"dev"`, `"stage":"prd"`, 1), false, nil},
		{"entry dropped", lines[0] + strings.Join(lines[2:], ""), false, nil},
		{"entries swapped", lines[1] + lines[0] + strings.Join(lines[2:], ""), false, nil},
		{"entry appended", strings.Join(lines[:5], "") + lines[4] + lines[5], false, nil},
		{"non-canonical whitespace", strings.Replace(data, `"stage":"dev"`, `"stage": "dev"`, 1), false, nil},
		{"checkpoint of another ledger", strings.Join(lines[:5], "") + otherCP, false, nil},
		{"no checkpoint", strings.Join(lines[:5], ""), false, nil},
		{"verifier of another key", data, true, nil},
		{"check refuses an entry", data, false, func(e ledger.Entry) error {
			if e.Index == 3 {
				return refuse
			}
			return nil
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst, _ := ledgertest.New(t)
			vv := v
			if tt.otherKey {
				vv = otherV
			}
			if err := dst.Import(strings.NewReader(tt.input), vv, tt.check); err == nil {
				t.Fatal("tampered import accepted")
			}
			if size, _ := dst.Size(); size != 0 {
				t.Fatalf("tampered import wrote %d entries", size)
			}
			if _, err := dst.Checkpoint(); !errors.Is(err, ledger.ErrEmpty) {
				t.Fatalf("tampered import wrote a checkpoint: %v", err)
			}
			if h, _ := dst.History("reg/app"); len(h) != 0 {
				t.Fatalf("tampered import wrote history")
			}
			if _, known, _ := dst.State(digest(0), "dev"); known {
				t.Fatalf("tampered import wrote state")
			}
		})
	}
}

func TestExportEmpty(t *testing.T) {
	l, _ := ledgertest.New(t)
	if err := l.Export(&bytes.Buffer{}); !errors.Is(err, ledger.ErrEmpty) {
		t.Fatalf("Export of empty ledger: %v, want ErrEmpty", err)
	}
}
