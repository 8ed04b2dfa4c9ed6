package app

import (
	"fmt"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

// StageOptions turns the registry settings of each stage into what the
// promotion service needs.
func StageOptions(cfg *config.Config) map[string]promotion.StageOptions {
	out := make(map[string]promotion.StageOptions, len(cfg.Stages))
	for _, s := range cfg.Stages {
		o := promotion.StageOptions{Attest: s.Attest, Tag: s.StageTag(), RequiredEvidence: s.RequiredEvidence, Groups: s.Groups}
		if s.Target != "" {
			o.Target = s.TargetRepository
		}
		out[s.Name] = o
	}
	return out
}

// EvidenceKeys loads the keys whose attestations count as evidence (the
// decision is signing.VerifiedEvidence's).
func EvidenceKeys(cfg *config.Config) ([]*signing.Verifier, error) {
	return loadVerifierList("evidenceKeys", cfg.EvidenceKeys)
}

// TrustedKeys loads the public keys of the stagegates whose promotions this
// one imports from the registry (the decision is signing.ForeignEntries'
// and signing.TrustedEntryCheck's).
func TrustedKeys(cfg *config.Config) ([]*signing.Verifier, error) {
	return loadVerifierList("registrySource.trustedKeys", cfg.RegistrySource.TrustedKeys)
}

func loadVerifierList(setting string, paths []string) ([]*signing.Verifier, error) {
	keys := make([]*signing.Verifier, 0, len(paths))
	for _, p := range paths {
		v, err := signing.LoadVerifier(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", setting, err)
		}
		keys = append(keys, v)
	}
	return keys, nil
}
