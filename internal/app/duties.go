package app

import (
	"fmt"

	"github.com/stagegate/stagegate/internal/admission"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/promotion"
)

// Duties are the promotion service's duties of each stage of cfg: who may
// revoke and who may override a revocation (config's defaults applied).
func Duties(cfg *config.Config) map[string]promotion.Duties {
	out := make(map[string]promotion.Duties, len(cfg.Stages))
	for _, s := range cfg.Stages {
		out[s.Name] = promotion.Duties{Revoke: cfg.RevokeGroups(s.Name), OverrideRevocation: cfg.OverrideRevocationGroups(s.Name)}
	}
	return out
}

// BreakGlassRules are admission's break-glass rules of each stage of cfg
// that restricts it (breakGlassGroups, breakGlassMaxAge).
func BreakGlassRules(cfg *config.Config) map[string]admission.BreakGlassRule {
	out := map[string]admission.BreakGlassRule{}
	for _, s := range cfg.Stages {
		groups, restricted := cfg.BreakGlassGroups(s.Name)
		if restricted || s.BreakGlassMaxAge > 0 {
			out[s.Name] = admission.BreakGlassRule{Restricted: restricted, Groups: groups, MaxAge: s.BreakGlassMaxAge.Std()}
		}
	}
	return out
}

// ApprovalRules are the promotion service's approvals of each stage of
// cfg that has them.
func ApprovalRules(cfg *config.Config) map[string]promotion.ApprovalRule {
	out := map[string]promotion.ApprovalRule{}
	for _, s := range cfg.Stages {
		if a := s.Approvals; a != nil {
			out[s.Name] = promotion.ApprovalRule{Required: a.Required, Groups: a.Groups, ExcludeRequester: a.ExcludesRequester(), Expires: a.Expires.Std()}
		}
	}
	return out
}

// WindowRules are the promotion service's windows of each stage of cfg
// that has them, with its freezeOverrideGroups.
func WindowRules(cfg *config.Config) (map[string]promotion.WindowRule, error) {
	out := map[string]promotion.WindowRule{}
	for _, s := range cfg.Stages {
		if len(s.Windows) == 0 {
			continue
		}
		sched, err := cfg.Schedule(s.Name)
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		out[s.Name] = promotion.WindowRule{Schedule: sched, OverrideGroups: s.FreezeOverrideGroups}
	}
	return out, nil
}
