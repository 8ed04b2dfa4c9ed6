package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/stagegate/stagegate/internal/ledger"
)

// Entry pages the scripts verify: at most maxEntries entries, and
// maxEntryBytes of them (an entry holds its envelope and labels).
const (
	defaultEntries = 100
	maxEntries     = 500
	maxEntryBytes  = 8 << 20
)

// entryItem is one entry as the browser verifies it: the leaf bytes
// exactly as hashed into the tree, not a re-encoding, so that what the
// page shows is what it verified; and the inclusion proof up to the
// checkpoint sent beside it.
type entryItem struct {
	Index uint64   `json:"index"`
	Leaf  []byte   `json:"leaf"`
	Proof [][]byte `json:"proof"`
}

type entriesAnswer struct {
	Checkpoint string      `json:"checkpoint"`
	Entries    []entryItem `json:"entries"`
	Next       *uint64     `json:"next,omitempty"`
}

// checkpoint is the newest checkpoint and the tree size it signs.
func (s *Server) checkpoint() (string, uint64, error) {
	cp, err := s.ledger.Checkpoint()
	if err != nil {
		return "", 0, fmt.Errorf("web: checkpoint: %w", err)
	}
	// The body's second line is the size (C2SP tlog-checkpoint); the
	// browser verifies the signature, the server only needs the number
	// to make proofs to it.
	lines := strings.SplitN(cp, "\n", 3)
	if len(lines) < 3 {
		return "", 0, fmt.Errorf("web: checkpoint: malformed")
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("web: checkpoint: size: %w", err)
	}
	return cp, size, nil
}

func (s *Server) keysData(w http.ResponseWriter, _ *http.Request) {
	k := s.keys
	if k.Trusted == nil {
		k.Trusted = []string{}
	}
	writeJSON(w, http.StatusOK, k)
}

// entriesData answers a page of entries with their proofs: of one image's
// history (?image=repository or digest) or of the whole ledger.
func (s *Server) entriesData(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	start, err := uintQuery(q.Get("start"), 0)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "start: " + err.Error()})
		return
	}
	limit, err := uintQuery(q.Get("limit"), defaultEntries)
	if err != nil || limit == 0 || limit > maxEntries {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("limit must be 1 to %d", maxEntries)})
		return
	}
	cp, size, err := s.checkpoint()
	if err != nil {
		s.fail(w, err)
		return
	}
	var es []ledger.Entry
	var next *uint64
	if key := q.Get("image"); key != "" {
		var more bool
		es, more, err = s.ledger.HistoryPage(key, start, int(limit), maxEntryBytes)
		if more && len(es) > 0 {
			n := es[len(es)-1].Index + 1
			next = &n
		}
	} else {
		if start >= size && start > 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("start %d: the ledger has %d entries", start, size)})
			return
		}
		es, err = s.ledger.EntriesPage(start, limit, maxEntryBytes)
		if n := start + uint64(len(es)); len(es) > 0 && n < size {
			next = &n
		}
	}
	if err != nil {
		s.fail(w, err)
		return
	}
	out := entriesAnswer{Checkpoint: cp, Entries: make([]entryItem, 0, len(es)), Next: next}
	for i := range es {
		e := &es[i]
		// An entry appended after the checkpoint was read has no proof to
		// it yet; the next page load shows it.
		if e.Index >= size {
			break
		}
		leaf, err := json.Marshal(e)
		if err != nil {
			s.fail(w, err)
			return
		}
		p, err := s.ledger.InclusionProof(e.Index, size)
		if err != nil {
			s.fail(w, err)
			return
		}
		out.Entries = append(out.Entries, entryItem{Index: e.Index, Leaf: leaf, Proof: nonNil(p.Hashes)})
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) consistencyData(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	from, err1 := uintQuery(q.Get("from"), 0)
	to, err2 := uintQuery(q.Get("to"), 0)
	if err1 != nil || err2 != nil || from == 0 || to < from {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "from and to must be tree sizes with 0 < from <= to"})
		return
	}
	p, err := s.ledger.ConsistencyProof(from, to)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"hashes": nonNil(p.Hashes)})
}

func nonNil(h [][]byte) [][]byte {
	if h == nil {
		return [][]byte{}
	}
	return h
}

func uintQuery(v string, def uint64) (uint64, error) {
	if v == "" {
		return def, nil
	}
	return strconv.ParseUint(v, 10, 64)
}
