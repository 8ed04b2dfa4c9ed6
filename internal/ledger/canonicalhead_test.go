package ledger

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// headAgrees is canonicalHead's contract on fields (an entry's bytes
// before the envelope): when it says yes, the plain check of fields+"}"
// says yes too and decodes the very same entry.
func headAgrees(t *testing.T, fields []byte) bool {
	t.Helper()
	got, ok := canonicalHead(fields)
	if !ok {
		return false
	}
	want, err := plainCanonical(append(bytes.Clone(fields), '}'))
	if err != nil {
		t.Fatalf("canonicalHead takes %q, which the plain check refuses: %v", fields, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("canonicalHead(%q) = %#v, json.Unmarshal gives %#v", fields, got, want)
	}
	return true
}

func headEntry() Entry {
	return Entry{Index: 7, Kind: KindPromotion, Repository: "reg/app", Digest: "sha256:" + strings.Repeat("a", 64), Stage: "dev",
		Subject: "ci@example.com", Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)}
}

// fieldsOf is what canonicalSplit hands canonicalHead for e.
func fieldsOf(t *testing.T, e Entry) []byte {
	t.Helper()
	e.Envelope = nil
	b, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b[:len(b)-1]
}

// TestCanonicalHeadTakesEntries: the shapes entries have take the fast
// path (else it would only cost time) and decode as json.Unmarshal does.
func TestCanonicalHeadTakesEntries(t *testing.T) {
	one, big := uint64(1), uint64(math.MaxUint64)
	tests := []struct {
		name string
		edit func(e *Entry)
	}{
		{"bare", func(*Entry) {}},
		{"index 0", func(e *Entry) { e.Index = 0 }},
		{"largest index", func(e *Entry) { e.Index = math.MaxUint64 }},
		{"index with platforms and labels", func(e *Entry) {
			e.Platforms = []string{"sha256:" + strings.Repeat("b", 64), "sha256:" + strings.Repeat("c", 64)}
			e.Labels = map[string]string{"team": "a", "app": "", "z.y/x": "v"}
		}},
		{"groups and reason", func(e *Entry) { e.Groups, e.Reason = []string{"admins", "ops"}, "because" }},
		{"revocation of all stages", func(e *Entry) { e.Kind, e.Stage = KindRevocation, AllStages }},
		{"break-glass", func(e *Entry) {
			e.Kind, e.Workload, e.Images = KindBreakGlass, "ns/Pod/p", []string{"reg/app@sha256:" + strings.Repeat("d", 64)}
		}},
		{"copies", func(e *Entry) { e.Copies = []string{"reg/mirror"} }},
		{"override and request", func(e *Entry) { e.OverridesRevocation, e.Request = &one, &big }},
		{"foreign", func(e *Entry) { e.Foreign = true }},
		{"freeze-override request", func(e *Entry) { e.Kind, e.FreezeOverride = KindRequest, true }},
		{"unicode", func(e *Entry) { e.Subject, e.Reason = "jörg@例え.jp", "\u00e9\U0001F600\u007f" }},
		{"empty strings that are not omitted", func(e *Entry) { e.Repository, e.Digest, e.Subject = "", "", "" }},
		{"time with nanoseconds and an offset", func(e *Entry) {
			e.Time = time.Date(2024, 2, 29, 23, 59, 59, 123456789, time.FixedZone("", -(7*3600+30*60)))
		}},
		{"zero time", func(e *Entry) { e.Time = time.Time{} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := headEntry()
			tt.edit(&e)
			if !headAgrees(t, fieldsOf(t, e)) {
				t.Fatalf("canonicalHead does not take %s", fieldsOf(t, e))
			}
		})
	}
}

// TestCanonicalHeadRefuses: bytes json.Marshal would not write are not
// taken, whatever json.Unmarshal makes of them.
func TestCanonicalHeadRefuses(t *testing.T) {
	good := string(fieldsOf(t, headEntry()))
	withLabels := headEntry()
	withLabels.Labels = map[string]string{"a": "1", "b": "2"}
	labelled := string(fieldsOf(t, withLabels))
	replace := func(s, old, new string) string {
		if !strings.Contains(s, old) {
			t.Fatalf("%q lacks %q", s, old)
		}
		return strings.Replace(s, old, new, 1)
	}
	tests := []struct {
		name   string
		fields string
	}{
		{"leading zero", replace(good, `"index":7`, `"index":07`)},
		{"negative index", replace(good, `"index":7`, `"index":-7`)},
		{"index as a float", replace(good, `"index":7`, `"index":7.0`)},
		{"index beyond uint64", replace(good, `"index":7`, `"index":18446744073709551616`)},
		{"space", replace(good, `"stage":"dev"`, `"stage": "dev"`)},
		{"escaped letter", replace(good, `"stage":"dev"`, `"stage":"d\u0065v"`)},
		{"raw html", replace(good, `"stage":"dev"`, `"stage":"<dev>"`)},
		{"raw line separator", replace(good, `"stage":"dev"`, "\"stage\":\"d\u2028v\"")},
		{"invalid utf-8", replace(good, `"stage":"dev"`, "\"stage\":\"d\xffv\"")},
		{"control character", replace(good, `"stage":"dev"`, "\"stage\":\"d\tv\"")},
		{"empty reason", replace(good, `,"time"`, `,"reason":"","time"`)},
		{"empty platforms", replace(good, `,"stage"`, `,"platforms":[],"stage"`)},
		{"null groups", replace(good, `,"time"`, `,"groups":null,"time"`)},
		{"foreign false", good + `,"foreign":false`},
		{"empty labels", good + `,"labels":{}`},
		{"labels unsorted", replace(labelled, `{"a":"1","b":"2"}`, `{"b":"2","a":"1"}`)},
		{"label twice", replace(labelled, `{"a":"1","b":"2"}`, `{"a":"1","a":"2"}`)},
		{"time with trailing zeros", replace(good, `05Z"`, `05.000Z"`)},
		{"time with an offset of zero", replace(good, `05Z"`, `05+00:00"`)},
		{"fields reordered", replace(good, `"kind":"promotion","repository":"reg/app"`, `"repository":"reg/app","kind":"promotion"`)},
		{"field missing", replace(good, `,"subject":"ci@example.com"`, ``)},
		{"unknown field", good + `,"colour":"red"`},
		{"capitalised key", replace(good, `"stage"`, `"Stage"`)},
		{"trailing comma", good + `,`},
		{"closed", good + `}`},
		{"cut", good[:len(good)-3]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := plainCanonical([]byte(tt.fields + "}")); err == nil {
				t.Fatalf("the plain check takes %q: the case is mislabelled", tt.fields)
			}
			if _, ok := canonicalHead([]byte(tt.fields)); ok {
				t.Fatalf("canonicalHead takes %q", tt.fields)
			}
		})
	}
}

// FuzzCanonicalHead: whatever the bytes, canonicalHead never takes what
// the plain check refuses, nor decodes differently.
func FuzzCanonicalHead(f *testing.F) {
	one := uint64(3)
	e := headEntry()
	e.Platforms, e.Groups, e.Reason = []string{"sha256:" + strings.Repeat("b", 64)}, []string{"g"}, "r"
	e.Labels, e.Copies, e.Workload, e.Images = map[string]string{"a": "1", "b": "é"}, []string{"c"}, "w", []string{"i"}
	e.OverridesRevocation, e.Request, e.Foreign = &one, &one, true
	for _, x := range []Entry{headEntry(), e} {
		b, err := json.Marshal(&x)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:len(b)-1])
	}
	f.Fuzz(func(t *testing.T, fields []byte) { headAgrees(t, fields) })
}
