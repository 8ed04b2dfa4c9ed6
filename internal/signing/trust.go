package signing

import (
	"errors"
	"fmt"

	"github.com/stagegate/stagegate/internal/ledger"
)

// TrustedEntryCheck returns the check that ledger verification calls for
// each entry: this stagegate's own entries must verify with own, foreign
// ones (imported from the registry) with one of foreign, the keys of the
// stagegates it follows (registrySource.trustedKeys). Either way the
// statement must describe the entry, as CheckEntry checks.
func TrustedEntryCheck(own *Verifier, foreign []*Verifier) func(ledger.Entry) error {
	ownCheck := CheckEntry(own)
	others := make([]func(ledger.Entry) error, len(foreign))
	for i, t := range foreign {
		others[i] = CheckEntry(t)
	}
	return func(e ledger.Entry) error {
		if !e.Foreign {
			return ownCheck(e)
		}
		if len(others) == 0 {
			return fmt.Errorf("signing: entry %d: %w: foreign entry, and no trusted keys are configured (registrySource.trustedKeys)", e.Index, ErrBadSignature)
		}
		errs := make([]error, 0, len(others))
		for _, c := range others {
			err := c(e)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
		}
		return fmt.Errorf("signing: entry %d: foreign entry verified by no trusted key: %w", e.Index, errors.Join(errs...))
	}
}
