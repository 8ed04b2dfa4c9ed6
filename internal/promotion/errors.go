package promotion

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/registry"
)

// Errors of the promotion use case. Promote, Revoke and RecordBreakGlass
// return, besides nil:
//
//   - ErrInvalid (wrapped, with how): the request itself is wrong.
//   - *DeniedError: the promotion policy refused it, with every violation.
//   - ErrNotPromoted (wrapped): a revocation names a digest that is not
//     promoted where it says.
//   - *ForbiddenError: the requester is in none of the groups that may do
//     this (revoke, override a revocation) in the stage; nothing was read
//     from the ledger for it, and nothing written.
//   - *ClosedError: the stage is closed for promotions now (windows.go);
//     nothing was resolved, read or written.
//   - *RevokedError: the digest is revoked in the stage and the promotion
//     does not override that (revocations are sticky).
//   - ErrRequestNotFound, ErrNotPending (wrapped): an approval or a
//     rejection names no request, or one that is no longer pending.
//   - *PublishError: the entry is recorded, and the Result holds its
//     receipt, but publishing it to the registry failed; it wraps the
//     registry error.
//   - A registry error, matched with internal/registry's sentinels (the one
//     set, internal/oci's errors wrap them too): ErrInvalidReference,
//     ErrNotFound, ErrUnauthorized, ErrUnreachable, and the typed
//     *HostNotAllowedError and *TimeoutError. Their text says what the
//     requester needs (the reference, the host, the setting) and is kept
//     as it is; internal/registry keeps every text a registry sent out of
//     it.
//   - Anything else (the ledger, the policy engine, signing) is wrapped
//     with "promotion: <step>: " and is the server's problem, not the
//     requester's.
//
// internal/api maps them to HTTP statuses in one place.
var (
	// ErrInvalid means the request itself is wrong; the message says how.
	ErrInvalid = errors.New("invalid request")
	// ErrNotPromoted means a revocation names a digest that is not promoted
	// where it says.
	ErrNotPromoted = errors.New("not promoted")
	// ErrRequestNotFound means no promotion request has that id.
	ErrRequestNotFound = errors.New("no such promotion request")
	// ErrNotPending means the request was approved, rejected or expired,
	// or (for a completion) lacks its approvals.
	ErrNotPending = errors.New("promotion request is not pending")
)

// DeniedError carries every violation the promotion policy reported.
type DeniedError struct {
	Stage      string
	Violations []string
}

func (e *DeniedError) Error() string {
	return "promotion to " + e.Stage + " denied by policy: " + strings.Join(e.Violations, "; ")
}

// ForbiddenError means the requester may not do Action in Stage: it is in
// none of Groups (empty: nobody may).
type ForbiddenError struct {
	Action  string
	Stage   string
	Subject string
	Groups  []string
	// Detail, if set, says more (which stage of "*" refused).
	Detail string
}

func (e *ForbiddenError) Error() string {
	who := "nobody may"
	if len(e.Groups) > 0 {
		who = "only groups " + strings.Join(e.Groups, ", ") + " may"
	}
	where := stageWord(e.Stage)
	if e.Stage == ledger.AllStages {
		where = "every stage"
	}
	msg := fmt.Sprintf("%s may not %s in %s: %s", e.Subject, e.Action, where, who)
	if e.Detail != "" {
		msg += " (" + e.Detail + ")"
	}
	return msg
}

// RevokedError means the digest is revoked in Stage by the revocation at
// ledger entry Index, and a plain promotion does not put it back.
type RevokedError struct {
	Stage  string
	Digest string
	Index  uint64
	By     string
	At     time.Time
	Reason string
	// OverrideGroups may override it (empty: nobody).
	OverrideGroups []string
}

func (e *RevokedError) Error() string {
	who := "nobody may override it in this stage"
	if len(e.OverrideGroups) > 0 {
		who = "a member of " + strings.Join(e.OverrideGroups, ", ") + " may override it: promote with overrideRevocation and a reason (stagegate promote --override-revocation --reason ...)"
	}
	return fmt.Sprintf("%s was revoked from stage %s by ledger entry %d (%s at %s: %s); a revoked digest is not promoted again by a plain promotion: %s",
		e.Digest, e.Stage, e.Index, e.By, e.At.UTC().Format(time.RFC3339), e.Reason, who)
}

// PublishError means the entry is recorded but publishing it to the
// registry failed. Promoting (or revoking) again retries the publication.
type PublishError struct {
	Index uint64
	Err   error
}

func (e *PublishError) Error() string {
	return fmt.Sprintf("recorded as ledger entry %d, but publishing to the registry failed (repeat the request to retry): %v", e.Index, e.Err)
}

func (e *PublishError) Unwrap() error { return e.Err }

// wrap names the step of the use case that failed, unless err is already
// one of the errors documented above, whose text reaches requesters as it
// is.
func wrap(step string, err error) error {
	if err == nil || documented(err) {
		return err
	}
	return fmt.Errorf("promotion: %s: %w", step, err)
}

func documented(err error) bool {
	_, denied := errors.AsType[*DeniedError](err)
	_, published := errors.AsType[*PublishError](err)
	_, forbidden := errors.AsType[*ForbiddenError](err)
	_, revoked := errors.AsType[*RevokedError](err)
	_, closed := errors.AsType[*ClosedError](err)
	return denied || published || forbidden || revoked || closed || errors.Is(err, ErrRequestNotFound) || errors.Is(err, ErrNotPending) || errors.Is(err, ErrInvalid) || errors.Is(err, ErrNotPromoted) ||
		errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, registry.ErrInvalidReference) || errors.Is(err, registry.ErrNotFound) ||
		errors.Is(err, registry.ErrUnauthorized) || errors.Is(err, registry.ErrUnreachable) ||
		errors.Is(err, registry.ErrHostNotAllowed) || errors.Is(err, registry.ErrTimeout)
}
