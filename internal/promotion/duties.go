package promotion

import (
	"fmt"
	"slices"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
)

// Duties say, for one stage, who may undo a promotion there: the groups
// that may revoke, and those that may promote a digest that is revoked
// there (an override, recorded as such). internal/config derives them
// (revokeGroups, overrideRevocationGroups); an empty list means nobody.
type Duties struct {
	Revoke             []string
	OverrideRevocation []string
}

// WithDuties sets the duties of each stage. A stage without duties, and
// every stage without this option, lets nobody revoke or override: these
// decisions fail closed, since a revocation pulls an image from a running
// stage and an override puts a withdrawn one back.
func WithDuties(d map[string]Duties) Option {
	return func(s *Service) {
		s.duties = make(map[string]Duties, len(d))
		for k, v := range d {
			s.duties[k] = Duties{Revoke: slices.Clone(v.Revoke), OverrideRevocation: slices.Clone(v.OverrideRevocation)}
		}
	}
}

// Actions a *ForbiddenError names.
const (
	ActionRevoke             = "revoke"
	ActionOverrideRevocation = "override a revocation"
)

// authorizeRevoke says whether id may revoke in stage; for AllStages, id
// must be allowed in every stage, since the revocation reaches them all. It
// reads nothing from the ledger, so a refused request costs no read and
// learns nothing of what is promoted.
func (s *Service) authorizeRevoke(id policy.Identity, stage string) error {
	if stage != ledger.AllStages {
		groups := s.duties[stage].Revoke
		if !memberOf(id, groups) {
			return &ForbiddenError{Action: ActionRevoke, Stage: stage, Subject: id.Subject, Groups: groups}
		}
		return nil
	}
	// The groups allowed in every stage: what "*" needs.
	var every []string
	for i, st := range s.stages {
		g := s.duties[st].Revoke
		if i == 0 {
			every = slices.Clone(g)
			continue
		}
		every = slices.DeleteFunc(every, func(x string) bool { return !slices.Contains(g, x) })
	}
	for _, st := range s.stages {
		if !memberOf(id, s.duties[st].Revoke) {
			return &ForbiddenError{Action: ActionRevoke, Stage: ledger.AllStages, Subject: id.Subject, Groups: every,
				Detail: fmt.Sprintf("not allowed in stage %s", st)}
		}
	}
	return nil
}

// authorizeOverride says whether id may promote a digest that is revoked
// in stage.
func (s *Service) authorizeOverride(id policy.Identity, stage string) error {
	groups := s.duties[stage].OverrideRevocation
	if !memberOf(id, groups) {
		return &ForbiddenError{Action: ActionOverrideRevocation, Stage: stage, Subject: id.Subject, Groups: groups}
	}
	return nil
}

// memberOf reports whether id is in one of groups. An identity without
// groups is in none: it can be given no duty.
func memberOf(id policy.Identity, groups []string) bool {
	return slices.ContainsFunc(id.Groups, func(g string) bool { return g != "" && slices.Contains(groups, g) })
}
