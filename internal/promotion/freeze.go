package promotion

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/signing"
)

// Emergency promotions by approval (issue 16: "an emergency promotion
// during a freeze needs an approval from freezeOverrideGroups, recorded").
//
// A member of the stage's freezeOverrideGroups who asks for an emergency
// promotion (FreezeOverride) is trusted to break the freeze: their own
// request is the approval, as before, so that a lone on-call engineer can
// still fix prod at night. Anyone else (a pipeline) gets a request, marked
// as a freeze-override request in its entry and predicate, that needs one
// approval from freezeOverrideGroups by someone other than the requester.
// Separation of duties beyond that is what a stage's approvals are for.
//
// In a stage that also has approvals, both rules hold: the stage's quorum
// (approvals by members of its approval groups) AND one freeze-override
// approval. An approver in both groups counts for both, as one person who
// may do both signed off on both; someone only in freezeOverrideGroups may
// approve while the freeze approval is still missing, and counts for that
// alone. The freeze approval is needed only while the stage is closed: at
// the next opening a request with its quorum completes as any other does
// (the Completer). In a stage without approvals a freeze-override request
// has nothing to wait for at the opening (a plain promotion passes then),
// so it expires there, or after freezeRequestExpires.

// freezeRequestExpires bounds the life of a freeze-override request to a
// stage without approvals: an emergency nobody approved within a day is
// one to ask for again, with what is known by then.
const freezeRequestExpires = 24 * time.Hour

// admitWindow is Promote's window check, made before anything is resolved.
// It says whether req opens a request, and under which rule: a stage with
// approvals always does (approvals may be collected while it is closed),
// and so does an emergency promotion during a freeze by a requester who
// needs an approval for it. req.FreezeOverride is cleared when the stage
// is open: the flag then changes nothing and is not recorded.
func (s *Service) admitWindow(req *Request, now time.Time) (ApprovalRule, bool, error) {
	if req.completes != nil {
		_, err := s.checkWindow(*req, now)
		return ApprovalRule{}, false, err
	}
	if req.FreezeOverride && strings.TrimSpace(req.Reason) == "" {
		return ApprovalRule{}, false, fmt.Errorf("%w: an emergency promotion during a freeze needs a reason", ErrInvalid)
	}
	groups := s.windows[req.Stage].OverrideGroups
	closed := s.freezeRecord(req.Stage, now) != nil
	req.FreezeOverride = req.FreezeOverride && closed
	if rule, ok := s.approvalRules[req.Stage]; ok {
		if req.FreezeOverride && len(groups) == 0 {
			return ApprovalRule{}, false, &ForbiddenError{Action: ActionFreezeOverride, Stage: req.Stage, Subject: req.Requester.Subject}
		}
		return rule, true, nil
	}
	if !req.FreezeOverride || memberOf(req.Requester, groups) || len(groups) == 0 {
		_, err := s.checkWindow(*req, now)
		return ApprovalRule{}, false, err
	}
	return s.freezeRule(req.Stage, now), true, nil
}

// freezeRecord is what a freeze-override records of stage's freeze at
// now, or nil when the stage is open.
func (s *Service) freezeRecord(stage string, now time.Time) *signing.FreezeOverride {
	rule, ok := s.windows[stage]
	if !ok {
		return nil
	}
	open, next := rule.Schedule.Open(now)
	if open {
		return nil
	}
	fo := &signing.FreezeOverride{}
	if w, _ := rule.Schedule.Closing(now); w != nil {
		fo.Window = w.Name
	}
	if !next.IsZero() {
		fo.NextOpen = next.UTC()
	}
	return fo
}

// freezeRule is the rule of a freeze-override request made at t to stage,
// which has no approvals: no quorum, and expiry at the next opening or
// after freezeRequestExpires, whichever comes first.
func (s *Service) freezeRule(stage string, t time.Time) ApprovalRule {
	expires := freezeRequestExpires
	if _, next := s.windows[stage].Schedule.Open(t); !next.IsZero() && next.Sub(t) < expires {
		expires = next.Sub(t)
	}
	return ApprovalRule{Expires: expires}
}

// requestRule is the rule request e is judged by, and false when its stage
// no longer asks for it (the request then expires).
func (s *Service) requestRule(e ledger.Entry) (ApprovalRule, bool) {
	if rule, ok := s.approvalRules[e.Stage]; ok {
		return rule, true
	}
	if e.FreezeOverride && len(s.windows[e.Stage].OverrideGroups) > 0 {
		return s.freezeRule(e.Stage, e.Time), true
	}
	return ApprovalRule{}, false
}

// tally sets v.Needed from v.Approvals at now and, on a freeze-override
// request, who approves the override: the requester when they are in
// freezeOverrideGroups, else the first other approver who is. Approvals
// are judged by the groups they were recorded with.
func (s *Service) tally(v *RequestView, now time.Time) {
	quorum := len(v.Approvals)
	v.FreezeApprovedBy = ""
	if v.FreezeOverride {
		groups, quorumGroups := s.windows[v.Stage].OverrideGroups, s.approvalRules[v.Stage].Groups
		v.FreezeGroups = slices.Clone(groups)
		if memberOf(v.Requester, groups) {
			v.FreezeApprovedBy = v.Requester.Subject
		}
		quorum = 0
		for _, a := range v.Approvals {
			id := policy.Identity{Subject: a.Subject, Groups: a.Groups}
			if memberOf(id, quorumGroups) {
				quorum++
			}
			if v.FreezeApprovedBy == "" && a.Subject != v.Requester.Subject && memberOf(id, groups) {
				v.FreezeApprovedBy = a.Subject
			}
		}
	}
	v.Needed = max(0, v.Required-quorum)
	if s.freezeNeeded(*v, now) {
		v.Needed++
	}
}

// freezeNeeded says whether v still needs its freeze-override approval at
// now: the stage is closed and nobody has approved the override yet.
func (s *Service) freezeNeeded(v RequestView, now time.Time) bool {
	return v.FreezeOverride && v.FreezeApprovedBy == "" && s.waitsFor(v.Stage, now) != ""
}

// mayAnswerFreeze is mayAnswer for a freeze-override request: the
// requester may not approve their own (the override needs another
// person); a member of the stage's approval groups may answer as always;
// a member of freezeOverrideGroups may reject, and approve while the
// override still needs its approval (else the approval would count for
// nothing).
func (s *Service) mayAnswerFreeze(v RequestView, a Answer, action string) error {
	quorumGroups := s.approvalRules[v.Stage].Groups
	groups := s.windows[v.Stage].OverrideGroups
	allowed := slices.Concat(quorumGroups, groups)
	if action == ActionApprove && a.By.Subject == v.Requester.Subject {
		return &ForbiddenError{Action: ActionApprove, Stage: v.Stage, Subject: a.By.Subject, Groups: allowed,
			Detail: fmt.Sprintf("request %d is their own: an emergency promotion during a freeze needs someone else's approval", v.ID)}
	}
	already := slices.ContainsFunc(v.Approvals, func(x ledger.Approval) bool { return x.Subject == a.By.Subject })
	switch {
	case memberOf(a.By, quorumGroups), already:
		return nil
	case !memberOf(a.By, groups):
		return &ForbiddenError{Action: action, Stage: v.Stage, Subject: a.By.Subject, Groups: allowed,
			Detail: fmt.Sprintf("request %d is an emergency promotion during a freeze", v.ID)}
	case action == ActionReject || s.freezeNeeded(v, s.now().UTC()):
		return nil
	}
	why := "the stage is open now"
	if v.FreezeApprovedBy != "" {
		why = "its freeze override is approved already, by " + v.FreezeApprovedBy
	}
	return &ForbiddenError{Action: action, Stage: v.Stage, Subject: a.By.Subject, Groups: quorumGroups,
		Detail: fmt.Sprintf("request %d needs no freeze-override approval: %s", v.ID, why)}
}
