package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// plainCanonical is the check canonicalEntry must agree with.
func plainCanonical(raw []byte) (Entry, error) {
	e, err := decodeEntry(raw)
	if err != nil {
		return Entry{}, err
	}
	again, err := json.Marshal(&e)
	if err != nil {
		return Entry{}, err
	}
	if !bytes.Equal(again, raw) {
		return Entry{}, errors.New("not canonical")
	}
	return e, nil
}

// TestCanonicalEntryAgrees: the fast path accepts exactly what decode,
// re-encode and compare accept, and decodes the same entry, however the
// envelope or the fields before it are made.
func TestCanonicalEntryAgrees(t *testing.T) {
	e := Entry{Index: 7, Kind: KindPromotion, Repository: "reg/app", Digest: "sha256:" + strings.Repeat("a", 64), Stage: "dev",
		Subject: "ci", Reason: "r", Time: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Labels: map[string]string{"envelope": "x"},
		Envelope: json.RawMessage(`{"payload":"e30=","signatures":[{"sig":"AA=="}]}`)}
	good, err := json.Marshal(&e)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := canonicalSplit(good); !ok {
		t.Fatal("the fast path does not take a canonical entry: it would only cost time")
	}
	noEnv := e
	noEnv.Envelope = nil
	bare, _ := json.Marshal(&noEnv)
	head := string(good[:bytes.LastIndex(good, []byte(envelopeKey))])
	withEnv := func(env string) []byte { return []byte(head + envelopeKey + env + "}") }
	tests := []struct {
		name string
		raw  []byte
		ok   bool
	}{
		{"canonical", good, true},
		{"no envelope", bare, true},
		{"envelope null", withEnv("null"), true},
		{"envelope with a nested envelope key", withEnv(`{"a":1,"envelope":{"b":2}}`), true},
		{"space in envelope", withEnv(`{"payload": "e30="}`), false},
		{"space inside an envelope string", withEnv(`{"payload":"e3 0="}`), true},
		{"newline in envelope", withEnv("{\"payload\":\"e30=\"\n}"), false},
		{"escaped quote, then a space inside the string", withEnv(`{"payload":"a\" b"}`), true},
		{"escaped backslash, then a space outside the string", withEnv(`{"payload":"a\\" }`), false},
		{"html in envelope", withEnv(`{"payload":"<x>"}`), false},
		{"escaped html in envelope", withEnv(`{"payload":"\u003cx\u003e"}`), true},
		{"line separator in envelope", withEnv("{\"payload\":\"\u2028\"}"), false},
		{"invalid envelope", withEnv(`{"payload":`), false},
		{"empty envelope", withEnv(""), false},
		{"trailing data in envelope", withEnv(`{} {}`), false},
		{"envelope twice", []byte(head + envelopeKey + `{"x":1}` + envelopeKey + `{"y":2}}`), false},
		{"capitalised envelope key before", []byte(`{"Envelope":{"z":0},` + head[1:] + envelopeKey + `{"y":2}}`), false},
		{"space in head", []byte(strings.Replace(string(good), `"stage":"dev"`, `"stage": "dev"`, 1)), false},
		{"fields reordered", []byte(strings.Replace(string(good), `{"index":7,"kind":"promotion"`, `{"kind":"promotion","index":7`, 1)), false},
		{"not an object", []byte(`[` + envelopeKey + `{}}`), false},
		{"no closing brace", good[:len(good)-1], false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, werr := plainCanonical(tt.raw)
			if (werr == nil) != tt.ok {
				t.Fatalf("plain check: %v, want ok=%v (the case is mislabelled)", werr, tt.ok)
			}
			got, err := canonicalEntry(tt.raw)
			if (err == nil) != tt.ok {
				t.Fatalf("canonicalEntry: %v, want ok=%v", err, tt.ok)
			}
			if err != nil {
				return
			}
			a, _ := json.Marshal(&got)
			b, _ := json.Marshal(&want)
			if !bytes.Equal(a, b) || !bytes.Equal(got.Envelope, want.Envelope) {
				t.Fatalf("decoded %s, want %s", a, b)
			}
		})
	}
}

// TestMarshalsUnchanged: the one-pass check says yes exactly when
// json.Marshal leaves the RawMessage as it is.
func TestMarshalsUnchanged(t *testing.T) {
	for _, b := range []string{
		`{}`, `null`, `{"a":"b c"}`, `{"a": "b"}`, `{"a":"b"} `, "{\"a\":\"b\"}\n", `{"a":"\" x"}`, `{"a":"\\" }`,
		`{"a":"<"}`, `{"a":"\u003c"}`, "{\"a\":\"\u2028\"}", "{\"a\":\"\u2029\"}", `{"a":"\u2028"}`, `{"a":`, ``, `{} {}`,
		`[1,2]`, `[1, 2]`, `"x"`, `{"a":"é"}`, "{\"a\":\"\xff\"}",
	} {
		out, err := json.Marshal(json.RawMessage(b))
		want := err == nil && string(out) == b
		if got := marshalsUnchanged([]byte(b)); got != want {
			t.Errorf("marshalsUnchanged(%q) = %v, json.Marshal says %v", b, got, want)
		}
	}
}
