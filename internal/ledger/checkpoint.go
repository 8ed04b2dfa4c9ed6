package ledger

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/transparency-dev/merkle/proof"
	"golang.org/x/mod/sumdb/note"
)

// Checkpoint is the parsed body of a verified C2SP tlog-checkpoint.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   []byte
}

func (c Checkpoint) body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root))
}

func signCheckpoint(s note.Signer, size uint64, root []byte) (string, error) {
	msg, err := note.Sign(&note.Note{Text: Checkpoint{Origin: s.Name(), Size: size, Root: root}.body()}, s)
	if err != nil {
		return "", fmt.Errorf("ledger: sign checkpoint: %w", err)
	}
	return string(msg), nil
}

// ParseCheckpoint verifies the signature of a checkpoint with v and parses
// its body. The origin must be v's name: stagegate signs as its log identity.
func ParseCheckpoint(text string, v note.Verifier) (Checkpoint, error) {
	if v == nil {
		return Checkpoint{}, errors.New("ledger: checkpoint: no verifier")
	}
	n, err := note.Open([]byte(text), note.VerifierList(v))
	if err != nil {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: %w", err)
	}
	// C2SP allows extension lines after the root; stagegate writes none and
	// ignores any.
	lines := strings.Split(strings.TrimSuffix(n.Text, "\n"), "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: %d body lines, want 3", len(lines))
	}
	if lines[0] != v.Name() {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: origin %q, want %q", lines[0], v.Name())
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: malformed size %q", lines[1])
	}
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != hasher.Size() {
		return Checkpoint{}, fmt.Errorf("ledger: checkpoint: malformed root hash %q", lines[2])
	}
	return Checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// VerifyReceipt checks a receipt offline: the checkpoint signature, the
// entry's attestation (check, if not nil), the leaf hash recomputed from the
// canonical encoding of the entry, and the inclusion proof up to the
// checkpoint's root and size. Each failure says what differs from what, in
// short hex, not the bytes: the reader is someone holding a receipt that
// does not verify, who must learn which part to distrust. The attestation is
// checked before the proof, so that an edited field is named as such rather
// than as a root that does not match.
func VerifyReceipt(rc Receipt, v note.Verifier, check func(Entry) error) error {
	cp, err := ParseCheckpoint(rc.Checkpoint, v)
	if err != nil {
		return fmt.Errorf("ledger: receipt: %w", err)
	}
	p := rc.Inclusion
	switch {
	case p.TreeSize != cp.Size:
		return fmt.Errorf("ledger: receipt: inclusion proof: for a tree of size %d, but the checkpoint is at size %d", p.TreeSize, cp.Size)
	case p.LeafIndex != rc.Entry.Index:
		return fmt.Errorf("ledger: receipt: inclusion proof: for entry %d, but the entry's index is %d", p.LeafIndex, rc.Entry.Index)
	case p.RootHash != nil && !bytes.Equal(p.RootHash, cp.Root):
		return fmt.Errorf("ledger: receipt: inclusion proof: root %s does not match checkpoint root %s at size %d",
			short(p.RootHash), short(cp.Root), cp.Size)
	}
	if err := validateEntry(&rc.Entry); err != nil {
		return fmt.Errorf("ledger: receipt: entry: %w", err)
	}
	if check != nil {
		if err := check(rc.Entry); err != nil {
			return fmt.Errorf("ledger: receipt: %w", err)
		}
	}
	leaf, err := json.Marshal(&rc.Entry)
	if err != nil {
		return fmt.Errorf("ledger: receipt: encode entry: %w", err)
	}
	root, err := proof.RootFromInclusionProof(hasher, p.LeafIndex, p.TreeSize, hasher.HashLeaf(leaf), p.Hashes)
	if err != nil {
		return fmt.Errorf("ledger: receipt: inclusion proof: %w", err)
	}
	if !bytes.Equal(root, cp.Root) {
		return fmt.Errorf("ledger: receipt: inclusion proof: entry %d and its proof lead to root %s, which does not match checkpoint root %s at size %d "+
			"(the entry was edited, or the proof is not its)", rc.Entry.Index, short(root), short(cp.Root), cp.Size)
	}
	return nil
}

// VerifyConsistency checks that newer extends older, i.e. that the log did
// not rewrite history between the two checkpoints. Both must already be
// verified (ParseCheckpoint).
func VerifyConsistency(older, newer Checkpoint, p ConsistencyProof) error {
	switch {
	case older.Origin != newer.Origin:
		return fmt.Errorf("ledger: consistency: origins %q and %q differ", older.Origin, newer.Origin)
	case p.From != older.Size || p.To != newer.Size:
		return fmt.Errorf("ledger: consistency: proof %d..%d, checkpoints %d..%d", p.From, p.To, older.Size, newer.Size)
	}
	if err := proof.VerifyConsistency(hasher, older.Size, newer.Size, p.Hashes, older.Root, newer.Root); err != nil {
		return fmt.Errorf("ledger: consistency: %w", err)
	}
	return nil
}
