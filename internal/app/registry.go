package app

import (
	"errors"
	"fmt"
	"os"

	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/signing"
)

// StageOptions turns the registry settings of each stage into what the
// promotion service needs.
func StageOptions(cfg *config.Config) map[string]promotion.StageOptions {
	out := make(map[string]promotion.StageOptions, len(cfg.Stages))
	for _, s := range cfg.Stages {
		o := promotion.StageOptions{Attest: s.Attest, Tag: s.StageTag(), RequiredEvidence: s.RequiredEvidence}
		if s.Target != "" {
			o.Target = s.TargetRepository
		}
		out[s.Name] = o
	}
	return out
}

// EvidenceKeys loads the keys whose attestations count as evidence.
func EvidenceKeys(cfg *config.Config) ([]oci.TrustedKey, error) {
	keys := make([]oci.TrustedKey, 0, len(cfg.EvidenceKeys))
	for _, p := range cfg.EvidenceKeys {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("evidenceKeys: %w", err)
		}
		k, err := oci.LoadTrustedKey(p, b)
		if err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// TrustedKeys loads the public keys of the stagegates whose promotions this
// one imports from the registry.
func TrustedKeys(cfg *config.Config) ([]*signing.Verifier, error) {
	keys := make([]*signing.Verifier, 0, len(cfg.RegistrySource.TrustedKeys))
	for _, p := range cfg.RegistrySource.TrustedKeys {
		v, err := signing.LoadVerifier(p)
		if err != nil {
			return nil, fmt.Errorf("registrySource.trustedKeys: %w", err)
		}
		keys = append(keys, v)
	}
	return keys, nil
}

// EntryCheck verifies an entry's attestation: our own entries with our key,
// foreign ones (imported from the registry) with one of the trusted keys.
func EntryCheck(own *signing.Verifier, trusted []*signing.Verifier) func(ledger.Entry) error {
	ownCheck := signing.CheckEntry(own)
	others := make([]func(ledger.Entry) error, len(trusted))
	for i, t := range trusted {
		others[i] = signing.CheckEntry(t)
	}
	return func(e ledger.Entry) error {
		if !e.Foreign {
			return ownCheck(e)
		}
		var errs []error
		for _, c := range others {
			err := c(e)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			return errors.New("foreign entry, and no trusted keys are configured (registrySource.trustedKeys)")
		}
		return fmt.Errorf("foreign entry verified by no trusted key: %w", errors.Join(errs...))
	}
}
