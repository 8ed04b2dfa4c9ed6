package promotion

import (
	"context"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
)

// StageView is what GET /v1/stages shows of one stage: its place in the
// pipeline, its rules, whether its windows let promotions in at the moment
// asked, when that changes next (nil: never), and its pending requests.
type StageView struct {
	Name       string     `json:"name"`
	Order      int        `json:"order"`
	Open       bool       `json:"open"`
	NextChange *time.Time `json:"nextChange,omitempty"`
	// ClosedBy names the denied span that closes the stage, if one does.
	ClosedBy string `json:"closedBy,omitempty"`
	// Groups may promote here (the stage's groups, as the policy reads
	// them from data.stagegate.config).
	Groups []string `json:"groups"`
	// Windows counts the spans; Schedule says what each one is.
	Windows              int      `json:"windows"`
	Schedule             []string `json:"schedule"`
	FreezeOverrideGroups []string `json:"freezeOverrideGroups"`
	// Approvals says whether promotions here need approvals, and
	// ApprovalRule which.
	Approvals    bool              `json:"approvals"`
	ApprovalRule *ApprovalRuleView `json:"approvalRule,omitempty"`
	// Pending are the ids of the stage's pending requests, oldest first,
	// at most maxStagePending; PendingMore says more follow (GET
	// /v1/requests?stage=&state=pending pages through them all).
	Pending     []uint64 `json:"pending"`
	PendingMore bool     `json:"pendingMore,omitempty"`
}

// ApprovalRuleView is a stage's approvals as GET /v1/stages shows them.
type ApprovalRuleView struct {
	Required         int      `json:"required"`
	Groups           []string `json:"groups"`
	ExcludeRequester bool     `json:"excludeRequester"`
	Expires          string   `json:"expires"`
}

// maxStagePending bounds the pending requests one stage view lists, and
// maxStageScan the requests it reads to find them, so that GET /v1/stages
// costs the same with 10,000 pending requests as with one.
const (
	maxStagePending = 20
	maxStageScan    = 200
)

// Stages shows each stage, in pipeline order, at the service's clock.
func (s *Service) Stages(ctx context.Context) []StageView {
	now := s.now().UTC()
	out := make([]StageView, 0, len(s.stages))
	for i, name := range s.stages {
		rule := s.windows[name]
		open, next := rule.Schedule.Open(now)
		v := StageView{Name: name, Order: i, Open: open, Windows: len(rule.Schedule), Schedule: []string{},
			Groups:               append([]string{}, s.stageOpts[name].Groups...),
			FreezeOverrideGroups: append([]string{}, rule.OverrideGroups...), Pending: []uint64{}}
		for _, w := range rule.Schedule {
			v.Schedule = append(v.Schedule, w.String())
		}
		if !next.IsZero() {
			n := next.UTC()
			v.NextChange = &n
		}
		if w, _ := rule.Schedule.Closing(now); w != nil {
			v.ClosedBy = w.Name
		}
		if ar, ok := s.approvalRules[name]; ok {
			v.Approvals = true
			v.ApprovalRule = &ApprovalRuleView{Required: ar.Required, Groups: append([]string{}, ar.Groups...),
				ExcludeRequester: ar.ExcludeRequester, Expires: ar.Expires.String()}
			v.Pending, v.PendingMore = s.stagePending(ctx, name, ar, now)
		} else if len(rule.OverrideGroups) > 0 {
			// Emergency requests (freeze.go) live a day at most.
			v.Pending, v.PendingMore = s.stagePending(ctx, name, ApprovalRule{Expires: freezeRequestExpires}, now)
		}
		out = append(out, v)
	}
	return out
}

// stagePending lists the first pending requests of stage. A failure to
// read is logged and shows none: the view is for people, and GET
// /v1/requests says what went wrong.
func (s *Service) stagePending(ctx context.Context, stage string, rule ApprovalRule, now time.Time) ([]uint64, bool) {
	ids := []uint64{}
	start, err := s.liveRequestsStart(rule, now)
	if err != nil {
		s.log.Warn("stages: finding the pending requests failed", "stage", stage, "err", err)
		return ids, false
	}
	for scanned := 0; scanned < maxStageScan; {
		page, next, err := s.Requests(ctx, stage, "", start, 50)
		if err != nil {
			s.log.Warn("stages: reading the pending requests failed", "stage", stage, "err", err)
			return ids, false
		}
		scanned += 50
		for _, v := range page {
			if v.State != RequestPending {
				continue
			}
			if len(ids) == maxStagePending {
				return ids, true
			}
			ids = append(ids, v.ID)
		}
		if next == nil {
			return ids, false
		}
		start = *next
	}
	return ids, true
}

// clockSlack is how far back of a request's expiry liveRequestsStart
// looks, in case the clock that timed the entries stepped back.
const clockSlack = time.Hour

// liveRequestsStart is the first ledger index whose entry is younger than
// a request of rule could be while pending (now - Expires, less
// clockSlack): requests before it have expired. Entries are timed as they
// are appended, one after the other, so their times grow with their index
// and a binary search reads a few dozen entries of millions.
func (s *Service) liveRequestsStart(rule ApprovalRule, now time.Time) (uint64, error) {
	oldest := now.Add(-rule.Expires - clockSlack)
	var start uint64
	err := s.ledger.View(func(r ledger.Reader) error {
		lo, hi := uint64(0), r.Size()
		for lo < hi {
			mid := lo + (hi-lo)/2
			e, err := r.Entry(mid)
			if err != nil {
				return err
			}
			if e.Time.Before(oldest) {
				lo = mid + 1
			} else {
				hi = mid
			}
		}
		start = lo
		return nil
	})
	return start, err
}
