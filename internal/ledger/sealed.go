package ledger

import (
	"crypto/sha256"
	"encoding/binary"
)

// sealedStore holds Verify's sealed state records, one per digest, for the
// whole ledger: 10^6 digests at 10^6 entries. As a map of strings to byte
// slices that was two heap objects per digest, and the collector rescanned
// all of them every cycle, about a sixth of verify's CPU time at that
// size. Here the records live in pointer-free chunks and the index is a
// map from the SHA-256 of the digest to a location, which holds no
// pointers either, so the collector skips both.
//
// A record is kept in a slot: a 4-byte capacity, a 4-byte length, then
// the capacity in bytes. A new version that fits is written over the old
// one, and a slot that is outgrown is replaced by one half as large again,
// so memory stays proportional to the digests, not to the entries.
type sealedStore struct {
	index  map[[sha256.Size]byte]uint64 // chunk<<32 | offset of the slot
	chunks [][]byte
}

// Chunks start small (a small ledger stays small) and double up to
// maxSealedChunk; a slot bigger than that gets a chunk of its own.
const (
	minSealedChunk = 64 << 10
	maxSealedChunk = 16 << 20
	slotHeader     = 8
)

func newSealedStore() *sealedStore {
	return &sealedStore{index: map[[sha256.Size]byte]uint64{}}
}

func (s *sealedStore) slot(loc uint64) []byte { return s.chunks[loc>>32][uint32(loc):] }

// get returns the record of digest, or nil. The bytes must not be kept:
// the next put of the digest may overwrite them.
func (s *sealedStore) get(digest string) []byte {
	loc, ok := s.index[sha256.Sum256([]byte(digest))]
	if !ok {
		return nil
	}
	sl := s.slot(loc)
	n := binary.LittleEndian.Uint32(sl[4:])
	return sl[slotHeader : slotHeader+n]
}

// put stores a copy of v as the record of digest, replacing any other.
func (s *sealedStore) put(digest string, v []byte) {
	key := sha256.Sum256([]byte(digest))
	if loc, ok := s.index[key]; ok {
		if sl := s.slot(loc); int(binary.LittleEndian.Uint32(sl)) >= len(v) {
			binary.LittleEndian.PutUint32(sl[4:], uint32(len(v)))
			copy(sl[slotHeader:], v)
			return
		}
	}
	capacity := len(v) + len(v)/2
	need := slotHeader + capacity
	last := len(s.chunks) - 1
	if last < 0 || cap(s.chunks[last])-len(s.chunks[last]) < need {
		size := minSealedChunk
		if last >= 0 {
			size = min(2*cap(s.chunks[last]), maxSealedChunk)
		}
		s.chunks = append(s.chunks, make([]byte, 0, max(size, need)))
		last++
	}
	c := s.chunks[last]
	off := len(c)
	c = binary.LittleEndian.AppendUint32(c, uint32(capacity))
	c = binary.LittleEndian.AppendUint32(c, uint32(len(v)))
	c = append(c, v...)
	s.chunks[last] = c[:off+need]
	s.index[key] = uint64(last)<<32 | uint64(off)
}

func (s *sealedStore) len() int { return len(s.index) }
