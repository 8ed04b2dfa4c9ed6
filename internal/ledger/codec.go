package ledger

import (
	"encoding/binary"
	"fmt"
	"slices"
)

// State records use a small binary encoding rather than JSON because State
// is the admission hot path: a lookup skips the stages it was not asked
// about without decoding them. The encoding is deterministic (stages and
// labels sorted) so that Verify can rebuild the index and compare bytes.
//
//	record  = version(1) str(repository) uv(n) str(platform)*n [uv(n) str(index)*n] uv(n) stage*n
//	stage   = str(name) uv(len(section)) section
//	section = flags(1) [mark: promoted] [mark: revoked] [mark: blocked] [str(origin of revoked)] [str(origin of blocked)]
//	mark    = uv(index) str(time.MarshalBinary) str(by) str(repository) str(reason) uv(n) (str(key) str(value))*n
//
// The flags say which parts are present: 1 promoted, 2 revoked, 4 blocked,
// 8 the origin of revoked, 16 the origin of blocked; 32 says that the
// promotion is foreign (imported from another stagegate's attestation),
// which stages that require a fresh registry source must know. The origin of a
// revocation mark (the digest its entry names) is written only when it is
// not the record's own digest.
//
// Version 1 has no list of indexes; version 2, the list. A record without
// indexes is written as version 1, so that the records of ledgers written
// before the list existed keep their bytes (Verify, which compares bytes,
// keeps accepting them; none of them has flags above 2) and an old record
// decodes with no indexes.
const (
	recordVersion        = 1
	recordVersionIndexes = 2
)

const (
	flagPromoted byte = 1 << iota
	flagRevoked
	flagBlocked
	flagRevokedOrigin
	flagBlockedOrigin
	flagPromotedForeign
	flagsKnown = 1<<iota - 1
)

// errCorruptRecord matches ErrCorrupt, so that a caller of State can tell
// an unreadable record from a failed read.
var errCorruptRecord = fmt.Errorf("%w state record", ErrCorrupt)

// encodeRecord encodes the record of digest.
func encodeRecord(digest string, r *stateRecord) []byte {
	b := []byte{recordVersion}
	if len(r.Indexes) > 0 {
		b[0] = recordVersionIndexes
	}
	b = appendStr(b, r.Repository)
	b = appendList(b, r.Platforms)
	if len(r.Indexes) > 0 {
		b = appendList(b, r.Indexes)
	}
	names := sortedKeys(r.Stages)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		m := r.Stages[name]
		var flags byte
		var origins []string
		for _, p := range []struct {
			mk           *mark
			flag, origin byte
		}{{m.Promoted, flagPromoted, 0}, {m.Revoked, flagRevoked, flagRevokedOrigin}, {m.Blocked, flagBlocked, flagBlockedOrigin}} {
			if p.mk == nil {
				continue
			}
			flags |= p.flag
			if p.flag == flagPromoted && p.mk.Foreign {
				flags |= flagPromotedForeign
			}
			if p.origin != 0 && p.mk.Origin != digest {
				flags |= p.origin
				origins = append(origins, p.mk.Origin)
			}
		}
		sec := []byte{flags}
		for _, mk := range []*mark{m.Promoted, m.Revoked, m.Blocked} {
			if mk != nil {
				sec = appendMark(sec, mk)
			}
		}
		for _, o := range origins {
			sec = appendStr(sec, o)
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
	keys := sortedKeys(m.Labels)
	b = binary.AppendUvarint(b, uint64(len(keys)))
	for _, k := range keys {
		b = appendStr(b, k)
		b = appendStr(b, m.Labels[k])
	}
	return b
}

// sortedKeys is slices.Sorted(maps.Keys(m)), without the iterator
// machinery and the growing for the usual map of one key or none: Verify
// encodes every state record and mark of the ledger, some twice.
func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	if len(keys) > 1 {
		slices.Sort(keys)
	}
	return keys
}

func appendList(b []byte, list []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(list)))
	for _, s := range list {
		b = appendStr(b, s)
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

// decodeRecord decodes v, the record of digest, keeping only the stages for
// which want returns true (all when want is nil). Everything is copied out
// of v.
func decodeRecord(digest string, v []byte, want func(stage []byte) bool) (*stateRecord, error) {
	d := decoder{b: v}
	version := d.byte()
	if version != recordVersion && version != recordVersionIndexes {
		return nil, errCorruptRecord
	}
	r := &stateRecord{Repository: d.str(), Stages: map[string]*stageMarks{}}
	// A lookup needs neither list.
	r.Platforms = d.list(want == nil)
	if version == recordVersionIndexes {
		r.Indexes = d.list(want == nil)
	}
	n := d.uv()
	for i := uint64(0); i < n && !d.bad; i++ {
		name := d.bytes()
		sec := decoder{b: d.bytes()}
		if d.bad || (want != nil && !want(name)) {
			continue
		}
		m := &stageMarks{}
		flags := sec.byte()
		if flags&flagPromoted != 0 {
			m.Promoted = sec.mark()
			m.Promoted.Foreign = flags&flagPromotedForeign != 0
		} else if flags&flagPromotedForeign != 0 {
			return nil, errCorruptRecord
		}
		if flags&flagRevoked != 0 {
			m.Revoked = sec.mark()
			m.Revoked.Origin = digest
		}
		if flags&flagBlocked != 0 {
			m.Blocked = sec.mark()
			m.Blocked.Origin = digest
		}
		if flags&flagRevokedOrigin != 0 {
			if m.Revoked == nil {
				return nil, errCorruptRecord
			}
			m.Revoked.Origin = sec.str()
		}
		if flags&flagBlockedOrigin != 0 {
			if m.Blocked == nil {
				return nil, errCorruptRecord
			}
			m.Blocked.Origin = sec.str()
		}
		if sec.bad || len(sec.b) != 0 || flags&^flagsKnown != 0 {
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

// list reads uv(n) str*n, keeping the strings only if keep.
func (d *decoder) list(keep bool) []string {
	n := d.uv()
	var out []string
	for i := uint64(0); i < n && !d.bad; i++ {
		if s := d.bytes(); keep {
			out = append(out, string(s))
		}
	}
	return out
}

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
