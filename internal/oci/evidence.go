package oci

import (
	"context"
	"fmt"

	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
)

// Attestations returns the DSSE envelopes stored under the cosign .att tag
// of repository@digest, as the registry holds them: nothing here decides
// whether one counts (internal/signing does, for evidence and for other
// stagegates' promotions). A missing tag is no attestations; any other
// registry failure is an error.
func (a *Attacher) Attestations(ctx context.Context, repository, digest string) ([][]byte, error) {
	ref, err := a.parseDigest(repository, digest)
	if err != nil {
		return nil, err
	}
	opts := a.coopts(ctx, ref)
	tag, err := ociremote.AttestationTag(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("oci: attestations of %s: %w", ref, err)
	}
	sigs, err := ociremote.Signatures(tag, opts...)
	if err != nil {
		return nil, classify("read attestations of", ref, err)
	}
	list, err := sigs.Get()
	if err != nil {
		return nil, classify("read attestations of", ref, err)
	}
	out := make([][]byte, 0, len(list))
	for _, s := range list {
		env, err := s.Payload()
		if err != nil {
			return nil, classify("read attestations of", ref, err)
		}
		out = append(out, env)
	}
	return out, nil
}
