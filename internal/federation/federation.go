// Package federation lets a stagegate that shares no ledger with another
// enforce its promotions: on a ledger miss it reads the digest's promotion
// and revocation attestations from the registry, keeps those signed by a
// trusted key, and imports them into the local ledger as foreign entries.
// Later decisions are local look-ups.
package federation

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
)

// Ledger is the local ledger.
type Ledger interface {
	History(key string) ([]ledger.Entry, error)
	Append(build ledger.BuildFunc) (ledger.Receipt, error)
}

// Fetcher reads verified foreign entries from the registry (internal/oci).
type Fetcher interface {
	ForeignEntries(ctx context.Context, repository, digest string, keys []*signing.Verifier) ([]ledger.Entry, error)
}

// Source imports foreign promotions on demand.
type Source struct {
	ledger  Ledger
	fetch   Fetcher
	keys    []*signing.Verifier
	timeout time.Duration
	refresh time.Duration
	log     *slog.Logger
	now     func() time.Time

	group singleflight.Group
	mu    sync.Mutex
	// synced holds when each digest was last read from the registry: a
	// miss is not asked again before refresh has passed, and a digest
	// learned from the registry is re-read after it, so that revocations
	// arrive.
	synced   map[string]time.Time
	imported map[string]string   // digest → repository, for digests learned from the registry
	local    map[string]struct{} // digests the ledger knows only from local entries
}

// Option configures a Source.
type Option func(*Source)

// WithTimeout bounds one registry fetch; keep it well below the webhook's
// timeout.
func WithTimeout(d time.Duration) Option { return func(s *Source) { s.timeout = d } }

// WithRefresh sets how often a digest is read from the registry again.
func WithRefresh(d time.Duration) Option { return func(s *Source) { s.refresh = d } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Source) { s.log = l } }

// New returns a Source that trusts keys.
func New(l Ledger, f Fetcher, keys []*signing.Verifier, opts ...Option) *Source {
	s := &Source{ledger: l, fetch: f, keys: keys, timeout: 2 * time.Second, refresh: 30 * time.Second,
		log: slog.New(slog.DiscardHandler), now: time.Now,
		synced: map[string]time.Time{}, imported: map[string]string{}, local: map[string]struct{}{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Lookup is called on a ledger miss. It reads the registry (once for
// concurrent callers, and not again for a recent miss) and reports whether
// it imported anything. An unreachable registry is an error that says so.
func (s *Source) Lookup(ctx context.Context, repository, digest string) (bool, error) {
	if s.recent(digest) {
		return false, nil
	}
	v, err, _ := s.group.Do(digest, func() (any, error) {
		// The shared fetch must outlive the first caller's context, and is
		// bounded on its own.
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
		defer cancel()
		return s.sync(fctx, repository, digest)
	})
	if err != nil {
		return false, err
	}
	return v.(bool), nil
}

// Seen is called when the ledger knows digest. If it was learned from the
// registry and not read for a while, it is read again in the background:
// the decision at hand uses what is known now.
func (s *Source) Seen(repository, digest string) {
	s.mu.Lock()
	_, ours := s.imported[digest]
	_, known := s.local[digest]
	stale := ours && s.now().Sub(s.synced[digest]) >= s.refresh
	s.mu.Unlock()
	if !stale && (ours || known) {
		return
	}
	go func() {
		_, _, _ = s.group.Do(digest, func() (any, error) {
			if !ours {
				// Learned before a restart, or promoted here: the ledger
				// says which, once per digest.
				if foreign, err := s.hasForeign(digest); err != nil || !foreign {
					return false, err
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
			defer cancel()
			imported, err := s.sync(ctx, repository, digest)
			if err != nil {
				s.log.Warn("refreshing a digest from the registry failed", "digest", digest, "err", err)
			}
			return imported, err
		})
	}()
}

// hasForeign reports whether the ledger holds foreign entries for digest,
// and remembers the digests that it does not.
func (s *Source) hasForeign(digest string) (bool, error) {
	entries, err := s.ledger.History(digest)
	if err != nil {
		return false, err
	}
	for _, e := range entries {
		if e.Foreign {
			s.mu.Lock()
			s.imported[digest] = e.Repository
			s.mu.Unlock()
			return true, nil
		}
	}
	s.mu.Lock()
	s.local[digest] = struct{}{}
	s.mu.Unlock()
	return false, nil
}

func (s *Source) recent(digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.synced[digest]
	return ok && s.now().Sub(t) < s.refresh
}

func (s *Source) sync(ctx context.Context, repository, digest string) (bool, error) {
	entries, err := s.fetch.ForeignEntries(ctx, repository, digest, s.keys)
	if err != nil {
		return false, fmt.Errorf("federation: the registry could not be reached for %s@%s: %w", repository, digest, err)
	}
	known, err := s.ledger.History(digest)
	if err != nil {
		return false, err
	}
	// A revocation of a platform is attested on the platform's digest, not
	// on the index's: read those too, or a pod naming the index would run
	// a platform revoked elsewhere. They go in by time with the index's
	// own entries, so that the ledger orders them as their ledger did.
	platforms := platformsOf(digest, entries, known)
	more, err := s.platformEntries(ctx, repository, platforms)
	if err != nil {
		return false, err
	}
	if len(more) > 0 {
		entries = append(entries, more...)
		sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.Before(entries[j].Time) })
	}
	have := map[string]bool{}
	for _, e := range known {
		have[string(e.Envelope)] = true
	}
	for _, p := range platforms {
		hist, err := s.ledger.History(p)
		if err != nil {
			return false, err
		}
		for _, e := range hist {
			have[string(e.Envelope)] = true
		}
	}
	imported := false
	for _, e := range entries {
		if have[string(e.Envelope)] {
			continue
		}
		e.Foreign = true
		s.completePlatformLabels(&e)
		if _, err := s.ledger.Append(func(_ ledger.Reader, index uint64) (*ledger.Entry, error) {
			e.Index = index
			return &e, nil
		}); err != nil {
			return imported, fmt.Errorf("federation: import %s entry for %s: %w", e.Kind, e.Digest, err)
		}
		have[string(e.Envelope)] = true
		imported = true
		s.log.Info("imported a foreign entry from the registry", "kind", e.Kind, "digest", e.Digest, "stage", e.Stage, "repository", repository)
	}
	s.mu.Lock()
	s.synced[digest] = s.now()
	if imported || s.imported[digest] != "" {
		s.imported[digest] = repository
	}
	s.mu.Unlock()
	return imported, nil
}

// platformsOf lists the platforms of digest named by its promotions, the
// ones fetched and the ones the ledger has.
func platformsOf(digest string, lists ...[]ledger.Entry) []string {
	var out []string
	for _, list := range lists {
		for _, e := range list {
			if e.Kind != ledger.KindPromotion || e.Digest != digest {
				continue
			}
			for _, p := range e.Platforms {
				if p != digest && !slices.Contains(out, p) {
					out = append(out, p)
				}
			}
		}
	}
	return out
}

// platformFetches bounds the concurrent reads of platforms' attestations.
const platformFetches = 4

// platformEntries reads the foreign entries of each platform, in platform
// order. Any failure fails the whole sync, as for the index itself: a
// revocation that could not be read must not pass for none.
func (s *Source) platformEntries(ctx context.Context, repository string, platforms []string) ([]ledger.Entry, error) {
	found := make([][]ledger.Entry, len(platforms))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(platformFetches)
	for i, p := range platforms {
		g.Go(func() error {
			es, err := s.fetch.ForeignEntries(gctx, repository, p, s.keys)
			if err != nil {
				return fmt.Errorf("federation: the registry could not be reached for %s@%s (a platform): %w", repository, p, err)
			}
			found[i] = es
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return slices.Concat(found...), nil
}

// completePlatformLabels copies the platform labels of a foreign promotion
// from its predicate when the fetcher left them out, so that each platform
// is recorded with its own labels, as where it was promoted. The envelope
// is verified again for that: only a trusted key's word is read. Labels
// for a digest that is not a platform of the entry are dropped (the
// ledger would refuse the entry).
func (s *Source) completePlatformLabels(e *ledger.Entry) {
	if e.Kind != ledger.KindPromotion || len(e.Platforms) == 0 || len(e.PlatformLabels) > 0 {
		return
	}
	for _, k := range s.keys {
		st, err := k.Verify(e.Envelope)
		if err != nil {
			continue
		}
		var p struct {
			PlatformLabels map[string]map[string]string `json:"platformLabels"`
		}
		if err := json.Unmarshal(st.Predicate, &p); err != nil {
			return
		}
		maps.DeleteFunc(p.PlatformLabels, func(d string, _ map[string]string) bool {
			return d == e.Digest || !slices.Contains(e.Platforms, d)
		})
		if len(p.PlatformLabels) > 0 {
			e.PlatformLabels = p.PlatformLabels
		}
		return
	}
}
