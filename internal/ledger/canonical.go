package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
)

// canonicalEntry decodes raw and checks that it is exactly json.Marshal of
// the decoded entry.
//
// It runs on every entry Verify, Import and Append see, so it first tries
// a cheaper way to the same verdict (canonicalSplit), and only when that
// cannot say yes does the plain decode, re-encode and compare decide (and
// word the error).
func canonicalEntry(raw []byte) (Entry, error) {
	if e, ok := canonicalSplit(raw); ok {
		return e, nil
	}
	e, err := decodeEntry(raw)
	if err != nil {
		return Entry{}, err
	}
	again, err := json.Marshal(&e)
	if err != nil {
		return Entry{}, fmt.Errorf("re-encode entry: %w", err)
	}
	if !bytes.Equal(again, raw) {
		return Entry{}, errors.New("entry bytes are not canonical")
	}
	return e, nil
}

// envelopeKey starts the last field json.Marshal writes for an Entry with
// an envelope.
const envelopeKey = `,"envelope":`

// canonicalSplit accepts raw only if it is canonical, and then returns the
// entry json.Unmarshal would: it never says yes where the plain check says
// no, and may say "don't know" (false) for anything unusual.
//
// The envelope is most of an entry's bytes, and the plain check scans it
// three times with encoding/json's scanner (Unmarshal validates, then
// decodes, and Marshal compacts a RawMessage). Here it is scanned once.
// raw is split as head + `,"envelope":` + env + "}" at the first
// `,"envelope":`. If head+"}" is the canonical encoding of an entry without
// envelope, and env is valid JSON that Marshal would write unchanged
// (compact, nothing to HTML-escape), then raw is exactly json.Marshal of
// that entry with Envelope = env, since Envelope is the struct's last
// field; and json.Unmarshal of raw decodes the head's fields the same way
// and takes env verbatim. Where the split was found does not matter for
// that argument, only for how often the fast path succeeds. The head is
// read by canonicalHead when it has a usual shape, and otherwise decoded,
// re-encoded and compared.
func canonicalSplit(raw []byte) (Entry, bool) {
	// The first one, not the last: bytes.Index is vectorised and LastIndex
	// is not, and only an entry with a label named "envelope" puts one
	// before the real one (and then takes the plain check).
	p := bytes.Index(raw, []byte(envelopeKey))
	if p < 0 || raw[len(raw)-1] != '}' {
		return Entry{}, false
	}
	env := raw[p+len(envelopeKey) : len(raw)-1]
	if !marshalsUnchanged(env) {
		return Entry{}, false
	}
	if e, ok := canonicalHead(raw[:p]); ok {
		e.Envelope = bytes.Clone(env)
		return e, true
	}
	buf := bufPool.Get().(*bytes.Buffer)
	defer bufPool.Put(buf)
	buf.Reset()
	buf.Write(raw[:p])
	buf.WriteByte('}')
	head := buf.Bytes()
	var e Entry
	if json.Unmarshal(head, &e) != nil || e.Envelope != nil {
		return Entry{}, false
	}
	again, err := json.Marshal(&e)
	if err != nil || !bytes.Equal(again, head) {
		return Entry{}, false
	}
	e.Envelope = bytes.Clone(env)
	return e, true
}

// marshalsUnchanged reports whether json.Marshal of json.RawMessage(b)
// gives b: Marshal compacts a RawMessage and escapes <, >, &, U+2028 and
// U+2029 in it (encoding/json's appendCompact), so b must be valid JSON
// with none of those and no whitespace outside strings. One pass over the
// bytes finds both (in valid JSON the string tracking is exact), and
// json.Valid decides validity.
func marshalsUnchanged(b []byte) bool {
	// Vectorised searches first: a DSSE envelope is base64 and names, so
	// the loop below rarely runs.
	for _, c := range []byte("<>&") {
		if bytes.IndexByte(b, c) >= 0 {
			return false
		}
	}
	if bytes.Contains(b, []byte("\u2028")) || bytes.Contains(b, []byte("\u2029")) {
		return false
	}
	if bytes.IndexByte(b, ' ') >= 0 || bytes.IndexByte(b, '\t') >= 0 || bytes.IndexByte(b, '\n') >= 0 || bytes.IndexByte(b, '\r') >= 0 {
		if spaceOutsideStrings(b) {
			return false
		}
	}
	return len(b) > 0 && json.Valid(b)
}

// spaceOutsideStrings reports whitespace between tokens; in valid JSON
// the string tracking is exact.
func spaceOutsideStrings(b []byte) bool {
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			return true
		}
	}
	return false
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
