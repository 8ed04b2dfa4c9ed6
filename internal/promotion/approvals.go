package promotion

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// Semi-automatic promotion: in a stage with approvals, a promotion that
// passes every rule is recorded as a signed request; approvals and a
// rejection are signed entries that name it, and the approval that makes
// the quorum completes it with a promotion, the policy asked again with
// input.approvals. Nothing about requests is kept in memory: a request's
// state is what the ledger's history of it (ledger.RequestName) says, so
// it is the same on every replica and after a restart.

// ApprovalRule is a stage's approvals (config approvals).
type ApprovalRule struct {
	Required         int
	Groups           []string
	ExcludeRequester bool
	Expires          time.Duration
}

// WithApprovals sets the stages whose promotions need approvals.
func WithApprovals(rules map[string]ApprovalRule) Option {
	return func(s *Service) {
		s.approvalRules = make(map[string]ApprovalRule, len(rules))
		for k, v := range rules {
			v.Groups = slices.Clone(v.Groups)
			s.approvalRules[k] = v
		}
	}
}

// States of a request.
const (
	RequestPending  = "pending"
	RequestApproved = "approved"
	RequestRejected = "rejected"
	RequestExpired  = "expired"
)

// ActionApprove and ActionReject are what a *ForbiddenError names.
const (
	ActionApprove = "approve"
	ActionReject  = "reject"
)

// RequestView is a request as its history shows it.
type RequestView struct {
	ID         uint64            `json:"id"`
	State      string            `json:"state"`
	Stage      string            `json:"stage"`
	Repository string            `json:"repository"`
	Digest     string            `json:"digest"`
	Requester  policy.Identity   `json:"requester"`
	Reason     string            `json:"reason,omitempty"`
	Time       time.Time         `json:"time"`
	Expires    time.Time         `json:"expires"`
	Required   int               `json:"required"`
	Needed     int               `json:"needed"`
	Approvals  []ledger.Approval `json:"approvals"`
	Rejection  *ledger.Approval  `json:"rejection,omitempty"`
	// Promotion is the entry that completed the request.
	Promotion *uint64 `json:"promotion,omitempty"`
	// OverridesRevocation is the revocation the request overrides, if it
	// asked to (overrideRevocation).
	OverridesRevocation *uint64 `json:"overridesRevocation,omitempty"`
	// Waits says why a pending request with its quorum is not completed:
	// the stage is closed by its windows. The completer (completer.go)
	// completes it at the next open moment, if it is still valid then.
	Waits string `json:"waits,omitempty"`
	// FreezeOverride marks an emergency promotion asked during a freeze
	// (freeze.go): while the stage is closed it needs an approval from
	// FreezeGroups, and FreezeApprovedBy is who gave it (the requester,
	// when they are in those groups).
	FreezeOverride   bool     `json:"freezeOverride,omitempty"`
	FreezeGroups     []string `json:"freezeGroups,omitempty"`
	FreezeApprovedBy string   `json:"freezeApprovedBy,omitempty"`
}

// maxRequestHistory bounds what is read of one request's history: the
// request, at most Required approvals (later ones are refused), one
// rejection and one promotion.
const maxRequestHistory = 64

func historyReader(r ledger.Reader) (ledger.HistoryReader, error) {
	hr, ok := r.(ledger.HistoryReader)
	if !ok {
		return nil, errors.New("promotion: approvals: the ledger reader cannot read history")
	}
	return hr, nil
}

// requestView reads request id as of now.
func (s *Service) requestView(r ledger.Reader, id uint64, now time.Time) (RequestView, error) {
	hr, err := historyReader(r)
	if err != nil {
		return RequestView{}, err
	}
	e, err := hr.Entry(id)
	if errors.Is(err, ledger.ErrNotFound) || err == nil && e.Kind != ledger.KindRequest {
		return RequestView{}, fmt.Errorf("%w: %d", ErrRequestNotFound, id)
	}
	if err != nil {
		return RequestView{}, err
	}
	rule, live := s.requestRule(e) // freeze.go
	v := RequestView{ID: id, Stage: e.Stage, Repository: e.Repository, Digest: e.Digest,
		Requester: policy.Identity{Subject: e.Subject, Groups: e.Groups}, Reason: e.Reason, Time: e.Time,
		Expires: e.Time.Add(rule.Expires), Required: rule.Required, Approvals: []ledger.Approval{},
		OverridesRevocation: e.OverridesRevocation, FreezeOverride: e.FreezeOverride}
	hist, _, err := hr.HistoryPage(ledger.RequestName(id), id+1, maxRequestHistory, 0)
	if err != nil {
		return RequestView{}, err
	}
	for _, h := range hist {
		a := ledger.Approval{Index: h.Index, Subject: h.Subject, Groups: h.Groups, Time: h.Time, Reason: h.Reason}
		switch {
		case h.Kind == ledger.KindApproval && !slices.ContainsFunc(v.Approvals, func(x ledger.Approval) bool { return x.Subject == h.Subject }):
			v.Approvals = append(v.Approvals, a)
		case h.Kind == ledger.KindRejection && v.Rejection == nil:
			v.Rejection = &a
		case h.Kind == ledger.KindPromotion && v.Promotion == nil:
			idx := h.Index
			v.Promotion = &idx
		}
	}
	s.tally(&v, now)
	switch {
	case v.Promotion != nil:
		v.State = RequestApproved
	case v.Rejection != nil:
		v.State = RequestRejected
	case !live || !now.Before(v.Expires):
		// Expired, or the stage no longer asks for approvals.
		v.State = RequestExpired
	default:
		v.State = RequestPending
		if v.Needed == 0 && v.FreezeApprovedBy == "" {
			v.Waits = s.waitsFor(v.Stage, now)
		}
	}
	return v, nil
}

// Request returns request id.
func (s *Service) Request(_ context.Context, id uint64) (RequestView, error) {
	var v RequestView
	err := s.ledger.View(func(r ledger.Reader) error {
		var err error
		v, err = s.requestView(r, id, s.now().UTC())
		return err
	})
	return v, err
}

// Requests lists the requests to stage from index start on, at most limit,
// of the given state ("" for all), and the start of the next page (nil on
// the last). A page reads at most limit requests, whatever the filter, so
// that listing 10,000 pending requests holds one page at a time.
func (s *Service) Requests(_ context.Context, stage, state string, start uint64, limit int) ([]RequestView, *uint64, error) {
	if err := s.checkStage(stage, false); err != nil {
		return nil, nil, err
	}
	if !slices.Contains([]string{"", RequestPending, RequestApproved, RequestRejected, RequestExpired}, state) {
		return nil, nil, fmt.Errorf("%w: state %q must be pending, approved, rejected or expired", ErrInvalid, state)
	}
	out := []RequestView{}
	var next *uint64
	err := s.ledger.View(func(r ledger.Reader) error {
		hr, err := historyReader(r)
		if err != nil {
			return err
		}
		page, more, err := hr.HistoryPage(ledger.RequestsName(stage), start, limit, 4<<20)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		for _, e := range page {
			v, err := s.requestView(r, e.Index, now)
			if err != nil {
				return err
			}
			if state == "" || v.State == state {
				out = append(out, v)
			}
		}
		if more && len(page) > 0 {
			n := page[len(page)-1].Index + 1
			next = &n
		}
		return nil
	})
	return out, next, err
}

// pendingOf finds a pending request of subject for digest in stage, so
// that re-sending a request returns it. It reads the digest's history,
// which a flood of other requests does not lengthen.
func (s *Service) pendingOf(r ledger.Reader, subject, digest, stage string, now time.Time) (uint64, bool, error) {
	hr, err := historyReader(r)
	if err != nil {
		return 0, false, err
	}
	for start := uint64(0); ; {
		page, more, err := hr.HistoryPage(digest, start, 1000, 4<<20)
		if err != nil {
			return 0, false, err
		}
		for _, e := range page {
			if e.Kind != ledger.KindRequest || e.Stage != stage || e.Subject != subject {
				continue
			}
			v, err := s.requestView(r, e.Index, now)
			if err != nil {
				return 0, false, err
			}
			if v.State == RequestPending {
				return e.Index, true, nil
			}
		}
		if !more || len(page) == 0 {
			return 0, false, nil
		}
		start = page[len(page)-1].Index + 1
	}
}

// openRequest records a request for req, once every rule passes: a
// refused request is refused as a promotion would be. An identical pending
// request (same requester, digest, stage) is returned instead.
func (s *Service) openRequest(ctx context.Context, req Request, img registry.Resolved, evidence map[string]any, rule ApprovalRule) (Result, error) {
	rc, err := s.append(ctx, func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		now := s.now().UTC()
		override, err := s.decide(ctx, r, req, img, evidence, now)
		if err != nil {
			return nil, err
		}
		if id, ok, err := s.pendingOf(r, req.Requester.Subject, img.Digest, req.Stage, now); err != nil || ok {
			if err != nil {
				return nil, err
			}
			return nil, &ledger.ExistsError{Index: id}
		}
		pred := signing.RequestPredicate{Stage: req.Stage, Repository: img.Repository, Platforms: img.Platforms,
			Requester: requester(req.Requester), Reason: req.Reason, Time: now, LedgerIndex: index,
			PolicyDigest: s.policy.Digest(), Required: rule.Required, Expires: now.Add(rule.Expires), RevocationOverride: override}
		if req.FreezeOverride {
			pred.FreezeOverride = s.freezeRecord(req.Stage, now) // nil if it opened since
		}
		env, err := s.sign(img.Repository, img.Digest, signing.RequestPredicateType, pred)
		if err != nil {
			return nil, err
		}
		e := &ledger.Entry{Index: index, Kind: ledger.KindRequest, Repository: img.Repository, Digest: img.Digest,
			Platforms: img.Platforms, Stage: req.Stage, Subject: req.Requester.Subject, Groups: req.Requester.Groups,
			Reason: req.Reason, Time: now, FreezeOverride: pred.FreezeOverride != nil, Envelope: env}
		if override != nil {
			idx := override.LedgerIndex
			e.OverridesRevocation = &idx
		}
		return e, nil
	})
	created := err == nil
	if err != nil && !errors.Is(err, ledger.ErrExists) {
		return Result{}, wrap("record", err)
	}
	res := Result{Receipt: rc, Created: created}
	if rc.Entry.Kind != ledger.KindRequest {
		// Already promoted there: the existing receipt, as without approvals.
		return res, nil
	}
	v, err := s.Request(ctx, rc.Entry.Index)
	if err != nil {
		return Result{}, wrap("request", err)
	}
	res.Request = &v
	if created {
		s.log.Info("promotion requested", "repository", img.Repository, "digest", img.Digest, "stage", req.Stage,
			"subject", req.Requester.Subject, "request", rc.Entry.Index, "required", rule.Required)
	}
	return res, nil
}

// Answer approves or rejects request ID.
type Answer struct {
	ID     uint64
	Reason string
	By     policy.Identity
}

// Approve records an approval of a pending request. The approval that
// makes the quorum completes the request: the policy is asked again with
// input.approvals (and, if it refuses, nothing is written), then the
// approval and the promotion are recorded, and Result is the promotion's.
// Approving twice counts once and writes nothing. Approving a request that
// is not pending is ErrNotPending; one's own (excludeRequester) or from a
// group that may not, a *ForbiddenError.
func (s *Service) Approve(ctx context.Context, a Answer) (Result, error) {
	if err := checkReason(a.Reason); err != nil {
		return Result{}, err
	}
	v, err := s.Request(ctx, a.ID)
	if err != nil {
		return Result{}, err
	}
	if err := s.mayAnswer(v, a, ActionApprove); err != nil {
		return Result{}, err
	}
	already := slices.ContainsFunc(v.Approvals, func(x ledger.Approval) bool { return x.Subject == a.By.Subject })
	var rc ledger.Receipt
	if already && v.Needed > 0 {
		return Result{Request: &v}, nil
	}
	if !already {
		// If this approval makes the quorum, the promotion is decided
		// with it before it is written, so that a refusal writes nothing.
		t := v
		t.Approvals = append(slices.Clone(v.Approvals), ledger.Approval{Subject: a.By.Subject, Groups: a.By.Groups, Time: s.now().UTC(), Reason: a.Reason})
		if s.tally(&t, s.now().UTC()); t.Needed == 0 {
			if err := s.decideCompletion(ctx, t, t.Approvals); err != nil {
				return Result{}, err
			}
		}
		if rc, err = s.answer(ctx, a, ledger.KindApproval); err != nil {
			return Result{}, err
		}
	}
	// Another approver may have made the quorum meanwhile, or completed
	// it: what counts is what the ledger says now.
	if v, err = s.Request(ctx, a.ID); err != nil {
		return Result{}, err
	}
	created := rc.Checkpoint != ""
	if v.State != RequestPending || v.Needed > 0 || v.Waits != "" {
		return Result{Receipt: rc, Created: created, Request: &v}, nil
	}
	res, err := s.complete(ctx, v)
	if isClosed(err) {
		// The stage closed since v was read: the request waits, as above.
		if nv, verr := s.Request(ctx, a.ID); verr == nil {
			return Result{Receipt: rc, Created: created, Request: &nv}, nil
		}
	}
	if errors.Is(err, ErrNotPending) {
		// Completed by a concurrent approval.
		if nv, verr := s.Request(ctx, a.ID); verr == nil && nv.State == RequestApproved {
			return Result{Receipt: rc, Created: created, Request: &nv}, nil
		}
	}
	if err != nil {
		return res, err
	}
	if nv, verr := s.Request(ctx, a.ID); verr == nil {
		res.Request = &nv
	}
	return res, nil
}

// completion is the promotion request v completes, with approvals.
func completion(v RequestView, approvals []ledger.Approval) Request {
	return Request{Image: v.Repository + "@" + v.Digest, Stage: v.Stage, Reason: v.Reason, Requester: v.Requester,
		OverrideRevocation: v.OverridesRevocation != nil, completes: &v.ID, approvals: approvals,
		FreezeOverride: v.FreezeApprovedBy != "", freezeBy: v.FreezeApprovedBy}
}

// decideCompletion asks the policy about completing v with approvals,
// recording nothing.
func (s *Service) decideCompletion(ctx context.Context, v RequestView, approvals []ledger.Approval) error {
	req := completion(v, approvals)
	// While the stage is closed the approval that makes the quorum is
	// still recorded if the policy passes (the request then waits for the
	// window, and the policy is asked again when it completes), so that
	// approvers need not come back at the opening.
	if _, err := s.checkWindow(req, s.now().UTC()); err != nil && !isClosed(err) {
		return err
	}
	img, evidence, err := s.resolveForCompletion(ctx, req)
	if err != nil {
		return err
	}
	err = s.ledger.View(func(r ledger.Reader) error {
		_, err := s.decide(ctx, r, req, img, evidence, s.now().UTC())
		return err
	})
	if errors.Is(err, ledger.ErrExists) {
		return nil // promoted there already; complete says so
	}
	return wrap("decide", err)
}

func (s *Service) resolveForCompletion(ctx context.Context, req Request) (registry.Resolved, map[string]any, error) {
	img, err := s.resolver.Resolve(ctx, req.Image)
	if err != nil {
		return img, nil, wrap("resolve", err)
	}
	var evidence map[string]any
	if so := s.stageOpts[req.Stage]; len(so.RequiredEvidence) > 0 && s.registry != nil {
		if evidence, err = s.verifiedEvidence(ctx, img, so.RequiredEvidence); err != nil {
			return img, nil, wrap("evidence", err)
		}
	}
	return img, evidence, nil
}

// complete records the promotion of v, whose quorum is recorded. The
// approvals it lists, and the policy sees, are those of the request as
// the write transaction reads it (checkCompletion).
func (s *Service) complete(ctx context.Context, v RequestView) (Result, error) {
	return s.Promote(ctx, completion(v, v.Approvals))
}

// Reject closes a pending request. The requester may withdraw their own;
// anyone else needs a group of the stage's approvals.
func (s *Service) Reject(ctx context.Context, a Answer) (Result, error) {
	if err := checkReason(a.Reason); err != nil {
		return Result{}, err
	}
	v, err := s.Request(ctx, a.ID)
	if err != nil {
		return Result{}, err
	}
	if err := s.mayAnswer(v, a, ActionReject); err != nil {
		return Result{}, err
	}
	rc, err := s.answer(ctx, a, ledger.KindRejection)
	if err != nil {
		return Result{}, err
	}
	nv, err := s.Request(ctx, a.ID)
	return Result{Receipt: rc, Created: true, Request: &nv}, err
}

// mayAnswer checks that v is pending and that a.By may answer it so.
func (s *Service) mayAnswer(v RequestView, a Answer, action string) error {
	if v.State != RequestPending {
		return fmt.Errorf("%w: request %d is %s", ErrNotPending, v.ID, v.State)
	}
	rule := s.approvalRules[v.Stage]
	own := a.By.Subject == v.Requester.Subject
	if action == ActionReject && own {
		return nil
	}
	if v.FreezeOverride {
		return s.mayAnswerFreeze(v, a, action) // freeze.go
	}
	if action == ActionApprove && own && rule.ExcludeRequester {
		return &ForbiddenError{Action: ActionApprove, Stage: v.Stage, Subject: a.By.Subject, Groups: rule.Groups,
			Detail: fmt.Sprintf("request %d is their own, and the stage excludes the requester", v.ID)}
	}
	if !memberOf(a.By, rule.Groups) {
		return &ForbiddenError{Action: action, Stage: v.Stage, Subject: a.By.Subject, Groups: rule.Groups}
	}
	return nil
}

// answer appends a signed approval or rejection of a.ID, after checking
// in the write transaction that the request is still pending and a.By has
// not already approved it.
func (s *Service) answer(ctx context.Context, a Answer, kind ledger.Kind) (ledger.Receipt, error) {
	predType := signing.ApprovalPredicateType
	if kind == ledger.KindRejection {
		predType = signing.RejectionPredicateType
	}
	rc, err := s.append(ctx, func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		now := s.now().UTC()
		v, err := s.requestView(r, a.ID, now)
		if err != nil {
			return nil, err
		}
		if v.State != RequestPending {
			return nil, fmt.Errorf("%w: request %d is %s", ErrNotPending, v.ID, v.State)
		}
		if kind == ledger.KindApproval {
			if i := slices.IndexFunc(v.Approvals, func(x ledger.Approval) bool { return x.Subject == a.By.Subject }); i >= 0 {
				return nil, &ledger.ExistsError{Index: v.Approvals[i].Index}
			}
		}
		id := a.ID
		pred := signing.AnswerPredicate{Stage: v.Stage, Repository: v.Repository, Request: id, Requester: requester(a.By),
			Reason: a.Reason, Time: now, LedgerIndex: index}
		env, err := s.sign(v.Repository, v.Digest, predType, pred)
		if err != nil {
			return nil, err
		}
		return &ledger.Entry{Index: index, Kind: kind, Repository: v.Repository, Digest: v.Digest, Stage: v.Stage,
			Subject: a.By.Subject, Groups: a.By.Groups, Reason: a.Reason, Time: now, Request: &id, Envelope: env}, nil
	})
	if err != nil && !errors.Is(err, ledger.ErrExists) {
		return ledger.Receipt{}, wrap("record", err)
	}
	if err == nil {
		s.log.Info("request answered", "request", a.ID, "kind", kind, "subject", a.By.Subject, "index", rc.Entry.Index)
	}
	return rc, nil
}

// checkCompletion is, in the promotion's write transaction, the last word
// on a completing promotion: the request must still be pending, with the
// quorum recorded, and its approvals are what the entry lists and the
// policy sees.
func (s *Service) checkCompletion(r ledger.Reader, req *Request, now time.Time) error {
	if req.completes == nil {
		return nil
	}
	v, err := s.requestView(r, *req.completes, now)
	if err != nil {
		return err
	}
	if v.State != RequestPending {
		return fmt.Errorf("%w: request %d is %s", ErrNotPending, v.ID, v.State)
	}
	if v.Needed > 0 {
		return fmt.Errorf("%w: request %d needs %d more approvals", ErrNotPending, v.ID, v.Needed)
	}
	req.approvals = v.Approvals
	req.FreezeOverride, req.freezeBy = v.FreezeApprovedBy != "", v.FreezeApprovedBy
	return nil
}

// policyApprovals is input.approvals.
func policyApprovals(as []ledger.Approval) []policy.Approval {
	if len(as) == 0 {
		return nil
	}
	out := make([]policy.Approval, len(as))
	for i, a := range as {
		groups := a.Groups
		if groups == nil {
			groups = []string{}
		}
		out[i] = policy.Approval{Subject: a.Subject, Groups: groups, Time: a.Time.UTC().Format(time.RFC3339), Reason: a.Reason}
	}
	return out
}
