package ledger

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// canonicalHead decodes fields, an entry's bytes before `,"envelope":`,
// when fields+"}" is the one form json.Marshal writes for an Entry without
// envelope, and then returns the entry json.Unmarshal of that would. It
// says "don't know" (false) for anything it does not expect, so it never
// accepts what decoding, re-encoding and comparing would refuse.
//
// It is canonicalSplit's check of the fields before the envelope. That
// check (json.Unmarshal, then json.Marshal and compare) was over a tenth of
// ledger verify beside the signature checks, most of it reflection; this
// reads the bytes once. It takes the fields every entry has in the order
// the struct declares them, with what omitempty omits absent, and leaves
// the rare shapes to the plain check: strings with escapes, platform
// labels and approvals.
func canonicalHead(fields []byte) (Entry, bool) {
	r := headReader{b: fields}
	var e Entry
	ok := r.lit(`{"index":`) && r.uint(&e.Index) &&
		r.lit(`,"kind":`) && r.kind(&e.Kind) &&
		r.lit(`,"repository":`) && r.str(&e.Repository) &&
		r.lit(`,"digest":`) && r.str(&e.Digest) &&
		(!r.lit(`,"platforms":`) || r.strs(&e.Platforms)) &&
		r.lit(`,"stage":`) && r.str(&e.Stage) &&
		r.lit(`,"subject":`) && r.str(&e.Subject) &&
		(!r.lit(`,"groups":`) || r.strs(&e.Groups)) &&
		(!r.lit(`,"reason":`) || r.nonEmpty(&e.Reason)) &&
		r.lit(`,"time":`) && r.time(&e.Time) &&
		(!r.lit(`,"labels":`) || r.strMap(&e.Labels)) &&
		(!r.lit(`,"copies":`) || r.strs(&e.Copies)) &&
		(!r.lit(`,"workload":`) || r.nonEmpty(&e.Workload)) &&
		(!r.lit(`,"images":`) || r.strs(&e.Images)) &&
		(!r.lit(`,"overridesRevocation":`) || r.uintPtr(&e.OverridesRevocation)) &&
		(!r.lit(`,"request":`) || r.uintPtr(&e.Request)) &&
		(!r.lit(`,"freezeOverride":`) || r.lit("true") && set(&e.FreezeOverride)) &&
		(!r.lit(`,"foreign":`) || r.lit("true") && set(&e.Foreign)) &&
		r.i == len(r.b)
	return e, ok
}

func set(b *bool) bool { *b = true; return true }

// headReader reads canonical JSON from b at i; each method consumes what
// it accepts, and a false from any of them ends the read.
type headReader struct {
	b []byte
	i int
}

// lit consumes s if the bytes at i are s.
func (r *headReader) lit(s string) bool {
	if len(r.b)-r.i < len(s) || string(r.b[r.i:r.i+len(s)]) != s {
		return false
	}
	r.i += len(s)
	return true
}

// uint reads a number as strconv.AppendUint writes it: digits, no
// leading zero, within uint64.
func (r *headReader) uint(v *uint64) bool {
	j := r.i
	for j < len(r.b) && r.b[j] >= '0' && r.b[j] <= '9' {
		j++
	}
	if j == r.i || (r.b[r.i] == '0' && j-r.i > 1) {
		return false
	}
	n, err := strconv.ParseUint(string(r.b[r.i:j]), 10, 64)
	if err != nil {
		return false
	}
	*v, r.i = n, j
	return true
}

func (r *headReader) uintPtr(v **uint64) bool {
	var n uint64
	if !r.uint(&n) {
		return false
	}
	*v = &n
	return true
}

// strBytes reads a string json.Marshal writes unescaped: bytes from 0x20
// on, valid UTF-8, none of the characters it escapes (", \, <, >, &,
// U+2028, U+2029). For those bytes json.Unmarshal's string is the bytes.
func (r *headReader) strBytes() ([]byte, bool) {
	if r.i >= len(r.b) || r.b[r.i] != '"' {
		return nil, false
	}
	start := r.i + 1
	for j := start; j < len(r.b); {
		c := r.b[j]
		switch {
		case c == '"':
			r.i = j + 1
			return r.b[start:j], true
		case c < 0x20 || c == '\\' || c == '<' || c == '>' || c == '&':
			return nil, false
		case c < utf8.RuneSelf:
			j++
		default:
			rn, size := utf8.DecodeRune(r.b[j:])
			if (rn == utf8.RuneError && size == 1) || rn == '\u2028' || rn == '\u2029' {
				return nil, false
			}
			j += size
		}
	}
	return nil, false
}

// str copies: head may be bbolt's memory, which the entry outlives.
func (r *headReader) str(s *string) bool {
	b, ok := r.strBytes()
	*s = string(b)
	return ok
}

func (r *headReader) kind(k *Kind) bool {
	var s string
	ok := r.str(&s)
	*k = Kind(s)
	return ok
}

// nonEmpty reads an omitempty string, which json.Marshal writes only
// when it is not "".
func (r *headReader) nonEmpty(s *string) bool { return r.str(s) && *s != "" }

// strs reads an omitempty []string: present, it has an element.
func (r *headReader) strs(v *[]string) bool {
	if !r.lit("[") {
		return false
	}
	var out []string
	for {
		var s string
		if !r.str(&s) {
			return false
		}
		out = append(out, s)
		if r.lit("]") {
			*v = out
			return true
		}
		if !r.lit(",") {
			return false
		}
	}
}

// strMap reads an omitempty map[string]string: present, it has a key,
// and json.Marshal writes keys sorted, so each is greater than the last
// (which also rules out the duplicates json.Unmarshal would fold).
func (r *headReader) strMap(v *map[string]string) bool {
	if !r.lit("{") {
		return false
	}
	out := map[string]string{}
	last := ""
	for {
		var k, s string
		if !r.str(&k) || (len(out) > 0 && k <= last) || !r.lit(":") || !r.str(&s) {
			return false
		}
		out[k], last = s, k
		if r.lit("}") {
			*v = out
			return true
		}
		if !r.lit(",") {
			return false
		}
	}
}

// time decodes as json.Unmarshal does (Time.UnmarshalJSON) and accepts
// only what Time.MarshalJSON writes back unchanged.
func (r *headReader) time(t *time.Time) bool {
	start := r.i
	if _, ok := r.strBytes(); !ok {
		return false
	}
	quoted := r.b[start:r.i]
	if t.UnmarshalJSON(quoted) != nil {
		return false
	}
	again, err := t.MarshalJSON()
	return err == nil && bytes.Equal(again, quoted)
}
