package promotion

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/windows"
)

// Promotion windows and freezes: a stage's schedule says when promotions
// to it are allowed. Outside an allowed span, or inside a denied one, a
// promotion is refused with a *ClosedError before anything is resolved,
// read or written, unless it is an emergency promotion (FreezeOverride)
// by a member of the stage's override groups, or one such a member
// approved (freeze.go), which its attestation records. Revocations and
// break-glass entries are never blocked: they narrow what runs, or record
// what already ran.

// WindowRule is one stage's schedule and who may promote despite it.
type WindowRule struct {
	Schedule windows.Schedule
	// OverrideGroups may promote during a freeze (empty: nobody).
	OverrideGroups []string
}

// WithWindows sets the windows of each stage; a stage without a rule is
// always open.
func WithWindows(rules map[string]WindowRule) Option {
	return func(s *Service) {
		s.windows = make(map[string]WindowRule, len(rules))
		for k, v := range rules {
			s.windows[k] = WindowRule{Schedule: slices.Clone(v.Schedule), OverrideGroups: slices.Clone(v.OverrideGroups)}
		}
	}
}

// ActionFreezeOverride is what a *ForbiddenError names when the requester
// may not promote during a freeze.
const ActionFreezeOverride = "promote during a freeze"

// ClosedError means Stage is closed for promotions at the moment asked:
// Window names the denied span that holds it ("" when it is outside every
// allowed span). NextOpen is when it opens again, zero if never.
type ClosedError struct {
	Stage          string
	Window         string
	At             time.Time
	NextOpen       time.Time
	OverrideGroups []string
}

func (e *ClosedError) Error() string {
	why := "outside its allowed windows"
	if e.Window != "" {
		why = "frozen (" + e.Window + ")"
	}
	when := "it opens again at " + e.NextOpen.UTC().Format(time.RFC3339)
	if e.NextOpen.IsZero() {
		when = "no window opens it again"
	}
	who := "nobody may promote there during a freeze"
	if len(e.OverrideGroups) > 0 {
		who = "a member of " + strings.Join(e.OverrideGroups, ", ") + " may promote with freezeOverride and a reason (an emergency promotion, recorded as such)"
	}
	return fmt.Sprintf("stage %s is closed for promotions at %s: %s; %s; %s", e.Stage, e.At.UTC().Format(time.RFC3339), why, when, who)
}

// checkWindow refuses req when its stage is closed at now and req is not
// an emergency promotion its requester may make. It returns what the
// attestation records of an emergency promotion, or nil when the stage is
// open.
func (s *Service) checkWindow(req Request, now time.Time) (*signing.FreezeOverride, error) {
	if req.FreezeOverride && strings.TrimSpace(req.Reason) == "" {
		return nil, fmt.Errorf("%w: an emergency promotion during a freeze needs a reason", ErrInvalid)
	}
	rule, ok := s.windows[req.Stage]
	if !ok {
		return nil, nil
	}
	open, next := rule.Schedule.Open(now)
	if open {
		return nil, nil
	}
	name := ""
	if w, _ := rule.Schedule.Closing(now); w != nil {
		name = w.Name
	}
	// A request completes during the freeze only as a freeze-override
	// request whose override is approved (checkCompletion sets freezeBy
	// from the ledger, in the write transaction).
	if !req.FreezeOverride || req.completes != nil && req.freezeBy == "" {
		return nil, &ClosedError{Stage: req.Stage, Window: name, At: now, NextOpen: next, OverrideGroups: slices.Clone(rule.OverrideGroups)}
	}
	by := req.freezeBy
	if req.completes == nil {
		if !memberOf(req.Requester, rule.OverrideGroups) {
			return nil, &ForbiddenError{Action: ActionFreezeOverride, Stage: req.Stage, Subject: req.Requester.Subject, Groups: slices.Clone(rule.OverrideGroups)}
		}
		by = req.Requester.Subject
	}
	fo := &signing.FreezeOverride{Window: name, ApprovedBy: by}
	if !next.IsZero() {
		fo.NextOpen = next.UTC()
	}
	return fo, nil
}

func isClosed(err error) bool {
	_, ok := errors.AsType[*ClosedError](err)
	return ok
}

// waitsFor says why a request of stage with its quorum waits at now ("" if
// the stage is open).
func (s *Service) waitsFor(stage string, now time.Time) string {
	rule, ok := s.windows[stage]
	if !ok {
		return ""
	}
	open, next := rule.Schedule.Open(now)
	switch {
	case open:
		return ""
	case next.IsZero():
		return "waits for the window: no window opens stage " + stage + " again"
	}
	return "waits for the window: stage " + stage + " opens at " + next.UTC().Format(time.RFC3339)
}
