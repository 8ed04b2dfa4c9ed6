package promotion

import (
	"context"
	"errors"
	"sync"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// Registry is the registry side of promotion (internal/oci).
type Registry interface {
	Attach(ctx context.Context, repository, digest string, envelope []byte) error
	MoveTag(ctx context.Context, repository, digest, tag string) error
	Copy(ctx context.Context, srcRepository, digest, dstRepository string, progress oci.Progress) error
	// Attestations returns the envelopes attached to the image; which
	// count as evidence is signing's decision (signing.VerifiedEvidence).
	Attestations(ctx context.Context, repository, digest string) ([][]byte, error)
}

// StageOptions say what a promotion to one stage does in the registry.
type StageOptions struct {
	// Attest attaches the attestation to the image, as `cosign attest`.
	Attest bool
	// Tag is moved to the promoted digest ("" for none).
	Tag string
	// Target maps a repository to the one the image is copied to ("" for
	// no copy).
	Target func(repository string) string
	// RequiredEvidence are predicate types to verify on the image and pass
	// to the policy.
	RequiredEvidence []string
	// Groups may promote here; the policy decides that (from
	// data.stagegate.config), so this is only what Stages shows.
	Groups []string
}

func (o StageOptions) target(repo string) string {
	if o.Target == nil {
		return ""
	}
	return o.Target(repo)
}

// WithRegistry turns on registry-native promotion: per-stage attestations,
// stage tags, copies and evidence verified with evidenceKeys.
func WithRegistry(r Registry, stages map[string]StageOptions, evidenceKeys []*signing.Verifier) Option {
	return func(s *Service) { s.registry, s.stageOpts, s.evidenceKeys = r, stages, evidenceKeys }
}

// publish attaches e's attestation and moves the stage tag, on the
// repository and on every copy.
func (s *Service) publish(ctx context.Context, e ledger.Entry, so StageOptions, tag bool) error {
	if s.registry == nil || (!so.Attest && (so.Tag == "" || !tag)) {
		return nil
	}
	var errs []error
	for _, repo := range append([]string{e.Repository}, e.Copies...) {
		// Attaching rewrites the image's .att tag (read, modify, write), so
		// two publications of one image must not overlap.
		unlock := s.lockImage(repo + "@" + e.Digest)
		if so.Attest {
			if err := s.registry.Attach(ctx, repo, e.Digest, e.Envelope); err != nil {
				errs = append(errs, err)
				unlock()
				continue
			}
		}
		if tag && so.Tag != "" {
			if err := s.registry.MoveTag(ctx, repo, e.Digest, so.Tag); err != nil {
				errs = append(errs, err)
			}
		}
		unlock()
	}
	if err := errors.Join(errs...); err != nil {
		return &PublishError{Index: e.Index, Err: err}
	}
	return nil
}

// verifiedEvidence returns the predicates of the attestations on img that
// the evidence keys verify, of the given types. Without keys nothing can
// verify, and the registry is not asked.
func (s *Service) verifiedEvidence(ctx context.Context, img registry.Resolved, types []string) (map[string]any, error) {
	if len(s.evidenceKeys) == 0 {
		return map[string]any{}, nil
	}
	envs, err := s.registry.Attestations(ctx, img.Repository, img.Digest)
	if err != nil {
		return nil, err
	}
	ev := signing.VerifiedEvidence(img.Digest, envs, s.evidenceKeys, types)
	s.log.DebugContext(ctx, "verified evidence", "image", img.Repository+"@"+img.Digest, "attestations", len(envs), "verified", len(ev))
	return ev, nil
}

// lockImage serialises publications of one image in this process. The
// locks are few (one per image being published) and dropped when unused.
func (s *Service) lockImage(key string) (unlock func()) {
	s.pubMu.Lock()
	l, ok := s.pubLocks[key]
	if !ok {
		l = &imageLock{}
		s.pubLocks[key] = l
	}
	l.users++
	s.pubMu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		s.pubMu.Lock()
		if l.users--; l.users == 0 {
			delete(s.pubLocks, key)
		}
		s.pubMu.Unlock()
	}
}

type imageLock struct {
	mu    sync.Mutex
	users int
}
