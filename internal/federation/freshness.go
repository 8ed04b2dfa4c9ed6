package federation

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/lru"
	"github.com/stagegate/stagegate/internal/revlist"
	"github.com/stagegate/stagegate/internal/signing"
)

// ListFetcher reads a revocation list's envelope from the registry
// (oci.Attacher).
type ListFetcher interface {
	GetEnvelope(ctx context.Context, reference string, limit int64) ([]byte, error)
}

// freshness is what the Source knows of its sources' revocation lists.
type freshness struct {
	fetch  ListFetcher
	lists  []string
	maxAge time.Duration
	stages []string

	mu     sync.Mutex
	issued map[string]time.Time // per list, the newest accepted list's time
	failed map[string]error     // per list, why the last read failed
	// listed holds the statement keys of list revocations known to be in
	// the ledger, so that a refresh reads the ledger for new ones only.
	listed *lru.Map[string, struct{}]
}

// WithFreshness makes the stages named require a fresh registry source: a
// promotion imported from the registry counts there only while every list
// (a repository:tag where a source stagegate publishes its revocation
// list) was signed at most maxAge ago. Their revocations are imported as
// they are read, whether or not the image's own attestations show them.
func WithFreshness(f ListFetcher, lists []string, maxAge time.Duration, stages []string) Option {
	return func(s *Source) {
		s.fresh = &freshness{fetch: f, lists: lists, maxAge: maxAge, stages: stages,
			issued: map[string]time.Time{}, failed: map[string]error{}, listed: lru.New[string, struct{}](maxTracked)}
	}
}

// WithClock sets the clock that ages lists and refreshes.
func WithClock(now func() time.Time) Option { return func(s *Source) { s.now = now } }

// Start reads the revocation lists now and then at every refresh, in the
// background, until Close.
func (s *Source) Start() {
	if s.fresh == nil || len(s.fresh.lists) == 0 {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(s.refresh)
		defer t.Stop()
		for {
			ctx, cancel := context.WithTimeout(s.base, s.timeout)
			if err := s.RefreshLists(ctx); err != nil && s.base.Err() == nil {
				s.log.Warn("reading a revocation list failed", "err", err)
			}
			cancel()
			select {
			case <-s.base.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// RefreshLists reads every revocation list, imports the revocations it
// does not know, and records each list's time. A list older than the
// newest one accepted from the same place is ignored: whoever can write
// to the registry could otherwise put an old one back.
func (s *Source) RefreshLists(ctx context.Context) error {
	if s.fresh == nil {
		return nil
	}
	var errs []error
	for _, ref := range s.fresh.lists {
		err := s.refreshList(ctx, ref)
		s.fresh.mu.Lock()
		if err != nil {
			s.fresh.failed[ref] = err
		} else {
			delete(s.fresh.failed, ref)
		}
		s.fresh.mu.Unlock()
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (s *Source) refreshList(ctx context.Context, ref string) error {
	env, err := s.fresh.fetch.GetEnvelope(ctx, ref, revlist.MaxBytes)
	if err != nil {
		return fmt.Errorf("federation: revocation list %s: %w", ref, err)
	}
	list, err := revlist.Verify(env, s.keys)
	if err != nil {
		return fmt.Errorf("federation: revocation list %s: %w", ref, err)
	}
	s.fresh.mu.Lock()
	prev, seen := s.fresh.issued[ref]
	s.fresh.mu.Unlock()
	if seen && list.Issued.Before(prev) {
		s.log.Warn("ignored a revocation list older than one read before", "reference", ref, "issued", list.Issued, "newest", prev)
		return nil
	}
	// Every revocation is imported before the list counts: a list whose
	// revocations are not all in the ledger says nothing yet.
	for i, env := range list.Revocations {
		if err := s.importListed(env); err != nil {
			return fmt.Errorf("federation: revocation list %s, revocation %d: %w", ref, i, err)
		}
	}
	s.fresh.mu.Lock()
	if t := s.fresh.issued[ref]; list.Issued.After(t) {
		s.fresh.issued[ref] = list.Issued
	}
	s.fresh.mu.Unlock()
	return nil
}

// importListed imports one revocation of a list, unless the ledger has it.
// One that no trusted key verifies is skipped, as on an image: the list's
// signer vouches for the list, not for what its entries claim.
func (s *Source) importListed(env []byte) error {
	key := statementKey(env)
	s.fresh.mu.Lock()
	_, done := s.fresh.listed.Get(key)
	s.fresh.mu.Unlock()
	if done {
		return nil
	}
	e, err := signing.ForeignEntry(env, s.keys)
	if err != nil || e.Kind != ledger.KindRevocation {
		s.log.Warn("skipped an entry of a revocation list", "kind", e.Kind, "err", err)
		return nil
	}
	s.importMu.Lock()
	defer s.importMu.Unlock()
	known, err := s.ledger.History(e.Digest)
	if err != nil {
		return err
	}
	if !slices.ContainsFunc(known, func(k ledger.Entry) bool { return statementKey(k.Envelope) == key }) {
		if _, err := s.ledger.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			e.Index = index
			return &e, nil
		}); err != nil {
			return fmt.Errorf("import revocation of %s: %w", e.Digest, err)
		}
		s.log.Info("imported a revocation from a revocation list", "digest", e.Digest, "stage", e.Stage, "repository", e.Repository)
	}
	s.fresh.mu.Lock()
	s.fresh.listed.Put(key, struct{}{})
	s.fresh.mu.Unlock()
	return nil
}

// Fresh returns nil when a promotion imported from the registry may count
// in stage: the stage does not require freshness, or every revocation
// list was read and signed at most maxAge ago. Otherwise it says which
// list is missing or how old it is (ErrStale).
func (s *Source) Fresh(stage string) error {
	f := s.fresh
	if f == nil || !slices.Contains(f.stages, stage) {
		return nil
	}
	if len(f.lists) == 0 {
		return fmt.Errorf("%w: stage %q requires it, and no revocation lists are configured (registrySource.revocationLists)", ErrStale, stage)
	}
	now := s.now()
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, ref := range f.lists {
		t, ok := f.issued[ref]
		if !ok {
			why := "it has not been read yet"
			if err := f.failed[ref]; err != nil {
				why = "reading it failed: " + err.Error()
			}
			return fmt.Errorf("%w: stage %q requires a revocation list of %s at most %s old, and %s", ErrStale, stage, ref, f.maxAge, why)
		}
		if age := now.Sub(t); age > f.maxAge {
			why := ""
			if err := f.failed[ref]; err != nil {
				why = "; reading a newer one failed: " + err.Error()
			}
			return fmt.Errorf("%w: stage %q requires a revocation list of %s at most %s old, and the newest was signed %s ago, at %s%s",
				ErrStale, stage, ref, f.maxAge, age.Round(time.Second), t.UTC().Format(time.RFC3339), why)
		}
	}
	return nil
}
