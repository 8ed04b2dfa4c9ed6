package app

import (
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
