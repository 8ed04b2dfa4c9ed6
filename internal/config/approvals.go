package config

import (
	"fmt"
	"strings"
	"time"
)

// Approvals make promotions to a stage semi-automatic: a promotion that
// passes every rule becomes a pending request, and Required approvals from
// Groups complete it.
type Approvals struct {
	// Required is how many distinct approvers complete a request.
	Required int `json:"required"`
	// Groups may approve (and reject); empty is refused by Validate.
	Groups []string `json:"groups"`
	// ExcludeRequester keeps the requester from approving their own
	// request. Default true.
	ExcludeRequester *bool `json:"excludeRequester,omitempty"`
	// Expires closes a request that has not been completed. Default 72h.
	Expires Duration `json:"expires,omitempty"`
}

// Bounds of Approvals.
const (
	DefaultApprovalsExpire = 72 * time.Hour
	maxApprovalsExpire     = 30 * 24 * time.Hour
	maxApprovalsRequired   = 16
)

// ExcludesRequester reports whether the requester may not approve.
func (a Approvals) ExcludesRequester() bool { return boolOr(a.ExcludeRequester, true) }

// validateApprovals fills in the defaults of each stage's approvals and
// checks them.
func (c *Config) validateApprovals() []error {
	var errs []error
	for i := range c.Stages {
		a := c.Stages[i].Approvals
		if a == nil {
			continue
		}
		name := c.Stages[i].Name
		if a.Expires == 0 {
			a.Expires = Duration(DefaultApprovalsExpire)
		}
		if a.Required < 1 || a.Required > maxApprovalsRequired {
			errs = append(errs, fmt.Errorf("stage %q: approvals.required %d must be between 1 and %d", name, a.Required, maxApprovalsRequired))
		}
		if len(a.Groups) == 0 {
			errs = append(errs, fmt.Errorf("stage %q: approvals.groups must name who may approve", name))
		}
		for _, g := range a.Groups {
			if strings.TrimSpace(g) == "" {
				errs = append(errs, fmt.Errorf("stage %q: approvals.groups: a group name must not be empty", name))
			}
		}
		if c.Stages[i].Target != "" {
			errs = append(errs, fmt.Errorf("stage %q: approvals with a target repository are not supported yet: the copy would be made before anyone approved", name))
		}
		if a.Expires < 0 || a.Expires.Std() > maxApprovalsExpire {
			errs = append(errs, fmt.Errorf("stage %q: approvals.expires %s must be positive and at most %s", name, a.Expires.Std(), maxApprovalsExpire))
		}
	}
	return errs
}

// addApprovals adds the stage's approvals to its policy data.
func addApprovals(data map[string]any, s Stage) {
	if s.Approvals == nil {
		return
	}
	data["approvals"] = map[string]any{
		"required":         int64(s.Approvals.Required),
		"groups":           anyList(s.Approvals.Groups),
		"excludeRequester": s.Approvals.ExcludesRequester(),
		"expiresSeconds":   int64(s.Approvals.Expires.Std() / time.Second),
	}
}
