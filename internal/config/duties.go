package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Separation of duties: who may revoke a promotion, promote a revoked
// digest again, and break glass, per stage. The group lists share one
// convention: nil (the key absent) takes the default, an empty list means
// nobody. A token with no groups matches no list, so it can do none of it.

// RevokeGroups are the groups that may revoke in stage: the stage's
// revokeGroups, or by default the groups that may promote there plus
// securityGroups. An unknown stage has nobody.
func (c *Config) RevokeGroups(stage string) []string {
	s, ok := c.Stage(stage)
	if !ok {
		return nil
	}
	if s.RevokeGroups != nil {
		return slices.Clone(s.RevokeGroups)
	}
	out := make([]string, 0, len(s.Groups)+len(c.SecurityGroups))
	for _, g := range append(slices.Clone(s.Groups), c.SecurityGroups...) {
		if !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// OverrideRevocationGroups are the groups that may promote a digest that is
// revoked in stage: the stage's overrideRevocationGroups, or by default its
// RevokeGroups (who may withdraw a digest may also put it back).
func (c *Config) OverrideRevocationGroups(stage string) []string {
	s, ok := c.Stage(stage)
	if !ok {
		return nil
	}
	if s.OverrideRevocationGroups != nil {
		return slices.Clone(s.OverrideRevocationGroups)
	}
	return c.RevokeGroups(stage)
}

// BreakGlassGroups are the groups whose members' objects may carry a
// counting break-glass annotation in stage, matched against the
// AdmissionReview's userInfo, and whether the stage restricts it at all
// (nil: anyone, as before the setting existed; breakGlass still decides).
func (c *Config) BreakGlassGroups(stage string) (groups []string, restricted bool) {
	s, ok := c.Stage(stage)
	if !ok {
		return nil, true
	}
	return slices.Clone(s.BreakGlassGroups), s.BreakGlassGroups != nil
}

// BreakGlassRestricted reports whether any stage sets breakGlassGroups:
// those trust the AdmissionReview's userInfo, which only an authenticated
// API server can vouch for.
func (c *Config) BreakGlassRestricted() bool {
	return slices.ContainsFunc(c.Stages, func(s Stage) bool { return s.BreakGlassGroups != nil })
}

// validateDuties checks the group lists and breakGlassMaxAge.
func (c *Config) validateDuties() []error {
	var errs []error
	check := func(what string, groups []string) {
		for _, g := range groups {
			if strings.TrimSpace(g) == "" {
				errs = append(errs, fmt.Errorf("%s: a group name must not be empty", what))
			}
		}
	}
	check("securityGroups", c.SecurityGroups)
	for _, s := range c.Stages {
		check(fmt.Sprintf("stage %q: revokeGroups", s.Name), s.RevokeGroups)
		check(fmt.Sprintf("stage %q: overrideRevocationGroups", s.Name), s.OverrideRevocationGroups)
		check(fmt.Sprintf("stage %q: breakGlassGroups", s.Name), s.BreakGlassGroups)
		if s.BreakGlassMaxAge < 0 {
			errs = append(errs, fmt.Errorf("stage %q: breakGlassMaxAge %s must not be negative (0: no limit)", s.Name, s.BreakGlassMaxAge.Std()))
		}
		if s.BreakGlassMaxAge > 0 && s.BreakGlassMaxAge.Std() < time.Minute {
			errs = append(errs, fmt.Errorf("stage %q: breakGlassMaxAge %s is below 1m: clocks of the API server's clients and stagegate differ by more", s.Name, s.BreakGlassMaxAge.Std()))
		}
	}
	if len(errs) > 0 {
		return []error{errors.Join(errs...)}
	}
	return nil
}

// addDuties adds the duties of s to its policy data, so that policies can
// read what the server enforces.
func (c *Config) addDuties(data map[string]any, s Stage) {
	data["revokeGroups"] = anyList(c.RevokeGroups(s.Name))
	data["overrideRevocationGroups"] = anyList(c.OverrideRevocationGroups(s.Name))
	if s.BreakGlassGroups != nil {
		data["breakGlassGroups"] = anyList(s.BreakGlassGroups)
	}
	if s.BreakGlassMaxAge > 0 {
		data["breakGlassMaxAgeSeconds"] = int64(s.BreakGlassMaxAge.Std() / time.Second)
	}
}

func anyList(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Warnings are what the operator should hear at start about settings that
// are valid but weaker than they look.
func (c *Config) Warnings() []string {
	var out []string
	if c.BreakGlassRestricted() && c.Admission.ClientCAFile == "" {
		var stages []string
		for _, s := range c.Stages {
			if s.BreakGlassGroups != nil {
				stages = append(stages, s.Name)
			}
		}
		out = append(out, fmt.Sprintf("stages %s set breakGlassGroups, which trusts the AdmissionReview's userInfo, but admission.clientCAFile is not set: "+
			"anyone who reaches the webhook can send a review claiming any user and group; set admission.listen and admission.clientCAFile "+
			"(the CA of the API server's webhook client certificate)", strings.Join(stages, ", ")))
	}
	return out
}
