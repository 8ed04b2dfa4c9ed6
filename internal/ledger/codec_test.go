package ledger

import (
	"encoding/hex"
	"reflect"
	"testing"
	"time"
)

func TestRecordCodec(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600))
	const self = "sha256:self"
	tests := []struct {
		name    string
		rec     *stateRecord
		version byte
	}{
		{"empty", &stateRecord{Stages: map[string]*stageMarks{}}, recordVersion},
		{"full", &stateRecord{
			Repository: "reg/app",
			Platforms:  []string{"sha256:b", "sha256:a"},
			Stages: map[string]*stageMarks{
				"prod": {Promoted: &mark{Index: 3, Time: at, By: "ci", Repository: "reg/app", Labels: map[string]string{"b": "2", "a": "1"}}},
				"*":    {Revoked: &mark{Index: 300, Time: at, By: "sec", Reason: "CVE", Origin: self}},
				"dev":  {Promoted: &mark{Index: 1}, Revoked: &mark{Index: 2, Origin: self}},
			},
		}, recordVersion},
		{"platform of indexes, revoked through one", &stateRecord{
			Repository: "reg/app",
			Indexes:    []string{"sha256:i2", "sha256:i1"},
			Stages: map[string]*stageMarks{
				"prod": {Promoted: &mark{Index: 3, Labels: map[string]string{"arch": "arm64"}}, Revoked: &mark{Index: 4, Origin: "sha256:i2"}},
				"dev":  {Promoted: &mark{Index: 5}, Revoked: &mark{Index: 2, Origin: self}, Blocked: &mark{Index: 2, Origin: self}},
			},
		}, recordVersionIndexes},
		{"index blocked by a platform", &stateRecord{
			Platforms: []string{"sha256:p1"},
			Stages: map[string]*stageMarks{
				"prod": {Promoted: &mark{Index: 9}, Revoked: &mark{Index: 1, Origin: self}, Blocked: &mark{Index: 7, Time: at, Origin: "sha256:p1"}},
			},
		}, recordVersion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeRecord(self, tt.rec)
			if b[0] != tt.version {
				t.Fatalf("version %d, want %d", b[0], tt.version)
			}
			got, err := decodeRecord(self, b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again := encodeRecord(self, got); string(again) != string(b) {
				t.Fatal("encoding is not deterministic across a round trip")
			}
			for name, m := range got.Stages {
				for i, mk := range []*mark{m.Promoted, m.Revoked, m.Blocked} {
					if mk != nil && !mk.Time.IsZero() && !mk.Time.Equal(at) {
						t.Fatalf("time %v, want %v", mk.Time, at)
					}
					want := []*mark{tt.rec.Stages[name].Promoted, tt.rec.Stages[name].Revoked, tt.rec.Stages[name].Blocked}[i]
					if (mk == nil) != (want == nil) || mk != nil && (mk.Index != want.Index || mk.Origin != want.Origin) {
						t.Fatalf("stage %s mark %d = %+v, want %+v", name, i, mk, want)
					}
				}
			}
			if got.Repository != tt.rec.Repository || !reflect.DeepEqual(got.Platforms, tt.rec.Platforms) ||
				!reflect.DeepEqual(got.Indexes, tt.rec.Indexes) || len(got.Stages) != len(tt.rec.Stages) {
				t.Fatalf("decoded %+v", got)
			}
			// A look-up skips both lists and still gets the stage it asks for.
			look, err := decodeRecord(self, b, func(s []byte) bool { return string(s) == "prod" })
			_, hasProd := tt.rec.Stages["prod"]
			if _, got := look.Stages["prod"]; err != nil || look.Platforms != nil || look.Indexes != nil || got != hasProd || len(look.Stages) > 1 {
				t.Fatalf("look-up decoded %+v, %v", look, err)
			}
			// Every truncation and every single-byte change must fail or
			// decode, never panic.
			for i := range b {
				if _, err := decodeRecord(self, b[:i], nil); err == nil {
					t.Fatalf("truncation to %d bytes decoded", i)
				}
				c := append([]byte(nil), b...)
				c[i] ^= 0xff
				_, _ = decodeRecord(self, c, nil)
			}
		})
	}
}

// TestRecordCodecReadsOldRecords pins a record as stagegate wrote it before
// records had indexes, blocked marks and origins: it must decode with
// none of them, its revocation being the digest's own, and encode back to
// the same bytes, so that Verify accepts the records of an old ledger
// that no index is part of.
func TestRecordCodecReadsOldRecords(t *testing.T) {
	const old = "01077265672f61707001097368613235363a7031010470726f644803000f010000000edf07f92500000000ffff026369077265672f6170700001047465616d0161010f010000000edf07f92500000000ffff03736563077265672f6170700343564500"
	const digest = "sha256:i"
	b, err := hex.DecodeString(old)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := decodeRecord(digest, b, nil)
	if err != nil {
		t.Fatal(err)
	}
	prod := rec.Stages["prod"]
	if rec.Repository != "reg/app" || !reflect.DeepEqual(rec.Platforms, []string{"sha256:p1"}) || rec.Indexes != nil ||
		prod == nil || prod.Promoted == nil || prod.Revoked == nil || prod.Blocked != nil ||
		prod.Revoked.Origin != digest || prod.Revoked.Reason != "CVE" || prod.Promoted.Labels["team"] != "a" {
		t.Fatalf("decoded %+v (prod %+v)", rec, prod)
	}
	if again := hex.EncodeToString(encodeRecord(digest, rec)); again != old {
		t.Fatalf("re-encoded as %s", again)
	}
	st := rec.fold(digest, "prod")
	if !st.Revoked || st.RevokedIndex != 1 || st.RevokedDigest != "" {
		t.Fatalf("fold = %+v", st)
	}
}
