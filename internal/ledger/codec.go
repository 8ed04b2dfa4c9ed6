package ledger

import (
	"encoding/binary"
	"errors"
	"maps"
	"slices"
)

// State records use a small binary encoding rather than JSON because State
// is the admission hot path: a lookup skips the stages it was not asked
// about without decoding them. The encoding is deterministic (stages and
// labels sorted) so that Verify can rebuild the index and compare bytes.
//
//	record  = version(1) str(repository) uv(n) str(platform)*n uv(n) stage*n
//	stage   = str(name) uv(len(section)) section
//	section = flags(1: promoted, 2: revoked) [mark] [mark]
//	mark    = uv(index) str(time.MarshalBinary) str(by) str(repository) str(reason) uv(n) (str(key) str(value))*n
const recordVersion = 1

var errCorruptRecord = errors.New("corrupt state record")

func encodeRecord(r *stateRecord) []byte {
	b := []byte{recordVersion}
	b = appendStr(b, r.Repository)
	b = binary.AppendUvarint(b, uint64(len(r.Platforms)))
	for _, p := range r.Platforms {
		b = appendStr(b, p)
	}
	names := slices.Sorted(maps.Keys(r.Stages))
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		m := r.Stages[name]
		var sec []byte
		var flags byte
		if m.Promoted != nil {
			flags |= 1
		}
		if m.Revoked != nil {
			flags |= 2
		}
		sec = append(sec, flags)
		for _, mk := range []*mark{m.Promoted, m.Revoked} {
			if mk != nil {
				sec = appendMark(sec, mk)
			}
		}
		b = appendStr(b, name)
		b = binary.AppendUvarint(b, uint64(len(sec)))
		b = append(b, sec...)
	}
	return b
}

func appendMark(b []byte, m *mark) []byte {
	b = binary.AppendUvarint(b, m.Index)
	t, err := m.Time.MarshalBinary()
	if err != nil {
		t = nil // only for offsets that are not whole minutes, which JSON cannot carry either
	}
	b = appendBytes(b, t)
	b = appendStr(b, m.By)
	b = appendStr(b, m.Repository)
	b = appendStr(b, m.Reason)
	keys := slices.Sorted(maps.Keys(m.Labels))
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, m.Labels[k])
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decodeRecord decodes v, keeping only the stages for which want returns
// true (all when want is nil). Everything is copied out of v.
func decodeRecord(v []byte, want func(stage []byte) bool) (*stateRecord, error) {
	d := decoder{b: v}
	if d.byte() != recordVersion {
		return nil, errCorruptRecord
	}
	r := &stateRecord{Repository: d.str(), Stages: map[string]*stageMarks{}}
	n := d.uv()
	for i := uint64(0); i < n && !d.bad; i++ {
		if want == nil {
			r.Platforms = append(r.Platforms, d.str())
		} else {
			d.bytes() // a lookup does not need the platforms
		}
	}
	n = d.uv()
	for i := uint64(0); i < n && !d.bad; i++ {
		name := d.bytes()
		sec := decoder{b: d.bytes()}
		if d.bad || (want != nil && !want(name)) {
			continue
		}
		m := &stageMarks{}
		flags := sec.byte()
		if flags&1 != 0 {
			m.Promoted = sec.mark()
		}
		if flags&2 != 0 {
			m.Revoked = sec.mark()
		}
		if sec.bad || len(sec.b) != 0 || flags&^3 != 0 {
			return nil, errCorruptRecord
		}
		r.Stages[string(name)] = m
	}
	if d.bad || len(d.b) != 0 {
		return nil, errCorruptRecord
	}
	return r, nil
}

// decoder reads the encoding above; any overrun sets bad instead of panicking.
type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.bad = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uv() uint64 {
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.bad = true
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uv()
	if d.bad || n > uint64(len(d.b)) {
		d.bad = true
		return nil
	}
	s := d.b[:n:n]
	d.b = d.b[n:]
	return s
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) mark() *mark {
	m := &mark{Index: d.uv()}
	if t := d.bytes(); len(t) > 0 {
		if err := m.Time.UnmarshalBinary(t); err != nil {
			d.bad = true
		}
	}
	m.By, m.Repository, m.Reason = d.str(), d.str(), d.str()
	n := d.uv()
	if n > uint64(len(d.b)) { // each label takes at least two bytes; bound the map
		d.bad = true
		return m
	}
	if n > 0 {
		m.Labels = make(map[string]string, n)
	}
	for i := uint64(0); i < n && !d.bad; i++ {
		k := d.str()
		m.Labels[k] = d.str()
	}
	return m
}
