package ledger

import (
	"reflect"
	"testing"
	"time"
)

func TestRecordCodec(t *testing.T) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600))
	tests := []struct {
		name string
		rec  *stateRecord
	}{
		{"empty", &stateRecord{Stages: map[string]*stageMarks{}}},
		{"full", &stateRecord{
			Repository: "reg/app",
			Platforms:  []string{"sha256:b", "sha256:a"},
			Stages: map[string]*stageMarks{
				"prod": {Promoted: &mark{Index: 3, Time: at, By: "ci", Repository: "reg/app", Labels: map[string]string{"b": "2", "a": "1"}}},
				"*":    {Revoked: &mark{Index: 300, Time: at, By: "sec", Reason: "CVE"}},
				"dev":  {Promoted: &mark{Index: 1}, Revoked: &mark{Index: 2}},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeRecord(tt.rec)
			got, err := decodeRecord(b, nil)
			if err != nil {
				t.Fatal(err)
			}
			if again := encodeRecord(got); string(again) != string(b) {
				t.Fatal("encoding is not deterministic across a round trip")
			}
			for _, m := range got.Stages {
				for _, mk := range []*mark{m.Promoted, m.Revoked} {
					if mk != nil && !mk.Time.IsZero() && !mk.Time.Equal(at) {
						t.Fatalf("time %v, want %v", mk.Time, at)
					}
				}
			}
			if got.Repository != tt.rec.Repository || !reflect.DeepEqual(got.Platforms, tt.rec.Platforms) || len(got.Stages) != len(tt.rec.Stages) {
				t.Fatalf("decoded %+v", got)
			}
			// Every truncation and every single-byte change must fail or
			// decode, never panic.
			for i := range b {
				if _, err := decodeRecord(b[:i], nil); err == nil {
					t.Fatalf("truncation to %d bytes decoded", i)
				}
				c := append([]byte(nil), b...)
				c[i] ^= 0xff
				_, _ = decodeRecord(c, nil)
			}
		})
	}
}
