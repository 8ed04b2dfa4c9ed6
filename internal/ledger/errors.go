package ledger

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers compare with errors.Is; every error returned by
// this package wraps one of these or is an *ExistsError or *VerifyError.
var (
	// ErrNotFound: no entry at that index.
	ErrNotFound = errors.New("ledger: not found")
	// ErrExists: the entry that build would have written is already recorded
	// (see ExistsError). Append still returns that entry's receipt.
	ErrExists = errors.New("ledger: already recorded")
	// ErrEmpty: the ledger has no entry, hence no checkpoint.
	ErrEmpty = errors.New("ledger: empty")
	// ErrNotEmpty: Import and NewImporter need an empty ledger.
	ErrNotEmpty = errors.New("ledger: not empty")
	// ErrReadOnly: a write was attempted on a ledger opened WithReadOnly.
	ErrReadOnly = errors.New("ledger: read-only")
	// ErrNoSigner: a write was attempted on a ledger opened without WithSigner.
	ErrNoSigner = errors.New("ledger: no checkpoint signer")
	// ErrOutOfRange: an index or tree size beyond the current tree.
	ErrOutOfRange = errors.New("ledger: out of range")
	// ErrLocked: another process holds the ledger file open for writing.
	ErrLocked = errors.New("ledger: file locked by another process")
	// ErrTruncated: the file is shorter than the pages its bbolt meta page
	// says are in use, so it lost data (a cut copy, a full disk). Open
	// refuses it rather than let bbolt read past the end (SIGBUS).
	ErrTruncated = errors.New("ledger: truncated")
	// ErrCorrupt: the file is not a readable bbolt file (neither meta page
	// is valid), or a state record in it does not decode (State, and the
	// Reader of a BuildFunc, return it rather than guess).
	ErrCorrupt = errors.New("ledger: corrupt")
	// ErrRolledBack: the ledger is older than, or disagrees with, the newest
	// checkpoint this server published (WithCheckpointGuard): it is an older
	// copy, or history was rewritten.
	ErrRolledBack = errors.New("ledger: rolled back")
)

// ExistsError is returned by a BuildFunc to say that what it was asked to
// record already is, at Index. Append then answers with the receipt of that
// entry and an error that matches ErrExists.
type ExistsError struct {
	Index uint64
}

func (e *ExistsError) Error() string {
	return fmt.Sprintf("ledger: already recorded at index %d", e.Index)
}

// Is makes errors.Is(err, ErrExists) true.
func (e *ExistsError) Is(target error) bool { return target == ErrExists }

// VerifyError names the first entry that failed verification. Index is -1
// when the problem is not tied to one entry (checkpoint, indexes, tree shape).
type VerifyError struct {
	Index  int64
	Reason string
	Err    error // underlying cause, if any
	// index: the entries are sound and only an index disagrees with
	// them, so rebuilding the indexes from the entries repairs it.
	index bool
}

func (e *VerifyError) Error() string {
	msg := "ledger: verify: "
	if e.Index >= 0 {
		msg += fmt.Sprintf("entry %d: ", e.Index)
	}
	msg += e.Reason
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *VerifyError) Unwrap() error { return e.Err }
