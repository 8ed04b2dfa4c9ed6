package ledger

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
)

// bbolt's on-disk meta page (go.etcd.io/bbolt v1.5.0, internal/common):
// a 16-byte page header (id u64, flags u16, count u16, overflow u32), then
// the meta: magic u32, version u32, pageSize u32, flags u32, root bucket
// (root pgid u64, sequence u64), freelist pgid u64, pgid u64 (the
// high-water mark: the first page id past the used pages), txid u64 and
// checksum u64, the FNV-64a of the meta bytes before it. Fields are in the
// machine's byte order. Pages 0 and 1 hold the two meta copies; bbolt
// trusts the valid one with the higher txid. bbolt exports none of this
// before Open, and Open already maps the file: the check must come first.
const (
	boltPageHeader = 16
	boltMetaSize   = 64
	boltMetaSum    = 56 // bytes covered by the checksum
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

func parseBoltMeta(b []byte) (boltMeta, error) {
	if len(b) < boltPageHeader+boltMetaSize {
		return boltMeta{}, errors.New("short meta page")
	}
	m := b[boltPageHeader : boltPageHeader+boltMetaSize]
	ne := binary.NativeEndian
	switch {
	case ne.Uint32(m[0:]) != boltMagic:
		return boltMeta{}, errors.New("not a bbolt meta page")
	case ne.Uint32(m[4:]) != boltVersion:
		return boltMeta{}, fmt.Errorf("bbolt format version %d, want %d", ne.Uint32(m[4:]), boltVersion)
	}
	h := fnv.New64a()
	h.Write(m[:boltMetaSum])
	if h.Sum64() != ne.Uint64(m[boltMetaSum:]) {
		return boltMeta{}, errors.New("meta page checksum mismatch")
	}
	return boltMeta{pageSize: ne.Uint32(m[8:]), pgid: ne.Uint64(m[40:]), txid: ne.Uint64(m[48:])}, nil
}

// checkFile refuses a ledger file that bbolt would crash on rather than
// report: bbolt maps the file and reads its pages as memory, so a page
// past the end of a truncated file is a SIGBUS, which no recover catches.
// A missing or empty file is fine (Open creates it); so is a file longer
// than its pages, since bbolt grows files ahead of use.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ledger: %w", err) // a *fs.PathError: it names the file
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("ledger: %w", err)
	}
	size := info.Size()
	if size == 0 {
		return nil
	}
	name := filepath.Base(path)
	read := func(off int64) ([]byte, error) {
		b := make([]byte, boltPageHeader+boltMetaSize)
		n, err := f.ReadAt(b, off)
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("ledger: read %s: %w", path, err)
		}
		return b[:n], nil
	}
	first, err := read(0)
	if err != nil {
		return err
	}
	m0, err0 := parseBoltMeta(first)
	// The page size is in the meta; when page 0 is damaged, try the sizes
	// bbolt itself tries for page 1.
	var m1 boltMeta
	err1 := errors.New("no second meta page")
	sizes := []int64{int64(m0.pageSize)}
	if err0 != nil {
		sizes = sizes[:0]
		for i := range 15 {
			sizes = append(sizes, 1024<<i)
		}
	}
	for _, ps := range sizes {
		if ps <= 0 || ps >= size {
			break
		}
		b, err := read(ps)
		if err != nil {
			return err
		}
		if m, err := parseBoltMeta(b); err == nil && (err0 != nil || m.pageSize == m0.pageSize) {
			m1, err1 = m, nil
			break
		} else if err0 == nil {
			err1 = err
		}
	}
	var m boltMeta
	switch {
	case err0 != nil && err1 != nil:
		return fmt.Errorf("%w: %s (%d bytes) has no valid bbolt meta page (page 0: %v; page 1: %v)%s",
			ErrCorrupt, name, size, err0, err1, restoreHint)
	case err0 != nil:
		m = m1
	case err1 != nil || m0.txid >= m1.txid:
		m = m0
	default:
		m = m1
	}
	if reach := int64(m.pgid) * int64(m.pageSize); reach > size || m.pageSize == 0 {
		return fmt.Errorf("%w: %s is %d bytes but its pages reach %d: the file was truncated%s",
			ErrTruncated, name, size, reach, restoreHint)
	}
	return nil
}

const restoreHint = "; restore it from a backup or `stagegate ledger import` a verified export"
