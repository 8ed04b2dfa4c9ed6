package federation

import (
	"context"
	"errors"
	"log/slog"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// AttestationReader reads the envelopes attached to an image
// (oci.Attacher).
type AttestationReader interface {
	Attestations(ctx context.Context, repository, digest string) ([][]byte, error)
}

// FromRegistry returns the Fetcher that reads an image's attestations with
// r and keeps the foreign entries that signing.ForeignEntries trusts. The
// registry only delivers envelopes; whether one counts is signing's
// decision. Skipped envelopes are logged to log (nil discards).
func FromRegistry(r AttestationReader, log *slog.Logger) Fetcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return registryFetcher{r: r, log: log}
}

type registryFetcher struct {
	r   AttestationReader
	log *slog.Logger
}

func (f registryFetcher) ForeignEntries(ctx context.Context, repository, digest string, keys []*signing.Verifier) ([]ledger.Entry, error) {
	envs, err := f.r.Attestations(ctx, repository, digest)
	if err != nil {
		return nil, err
	}
	entries, skipped := signing.ForeignEntries(digest, envs, keys)
	for _, err := range skipped {
		if errors.Is(err, signing.ErrNotOurs) {
			f.log.DebugContext(ctx, "skipped attestation", "image", repository+"@"+digest, "err", err)
			continue
		}
		f.log.WarnContext(ctx, "skipped a malformed foreign attestation", "image", repository+"@"+digest, "err", err)
	}
	return entries, nil
}
