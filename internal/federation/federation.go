// Package federation lets a stagegate that shares no ledger with another
// enforce its promotions: on a ledger miss it reads the digest's promotion
// and revocation attestations from the registry, keeps those signed by a
// trusted key, and imports them into the local ledger as foreign entries.
// Later decisions are local look-ups.
package federation

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	"github.com/stagegate/stagegate/internal/lru"
	"github.com/stagegate/stagegate/internal/signing"
)

// Ledger is the local ledger.
type Ledger interface {
	History(key string) ([]ledger.Entry, error)
	Append(build ledger.BuildFunc) (ledger.Receipt, error)
}

// Fetcher reads verified foreign entries from the registry (FromRegistry).
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
	// importMu makes "is it in the ledger? then append it" one step for
	// the image syncs and the revocation lists, which may import the same
	// revocation at once.
	importMu sync.Mutex
	fresh    *freshness
	mu       sync.Mutex
	// synced holds when each repository@digest was last read from the
	// registry: a miss is not asked again before refresh has passed, and a
	// digest learned from the registry is re-read after it, so that
	// revocations arrive. It is keyed by repository too: a review naming
	// attacker/empty@D must not make team/app@D a cached miss.
	synced   *lru.Map[string, time.Time]
	imported *lru.Map[string, string]   // digest → repository, for digests learned from the registry
	local    *lru.Map[string, struct{}] // digests the ledger knows only from local entries

	// base ends the background refreshes on Close; wg waits for them.
	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// maxTracked bounds each of the Source's maps: digests are named by
// whoever creates pods.
const maxTracked = 1 << 16

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
		synced: lru.New[string, time.Time](maxTracked), imported: lru.New[string, string](maxTracked),
		local: lru.New[string, struct{}](maxTracked)}
	s.base, s.cancel = context.WithCancel(context.Background())
	for _, o := range opts {
		o(s)
	}
	return s
}

// Close stops the background refreshes and waits for them.
func (s *Source) Close() {
	s.cancel()
	s.wg.Wait()
}

// Lookup is called on a ledger miss. It reads the registry (once for
// concurrent callers, and not again for a recent miss) and reports whether
// it imported anything. An unreachable registry is an error that says so.
func (s *Source) Lookup(ctx context.Context, repository, digest string) (bool, error) {
	if s.recent(repository, digest) {
		return false, nil
	}
	v, err, _ := s.group.Do(repository+"@"+digest, func() (any, error) {
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
	_, ours := s.imported.Get(digest)
	_, known := s.local.Get(digest)
	last, _ := s.synced.Get(repository + "@" + digest)
	stale := ours && s.now().Sub(last) >= s.refresh
	s.mu.Unlock()
	if !stale && (ours || known) {
		return
	}
	if s.base.Err() != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _, _ = s.group.Do(repository+"@"+digest, func() (any, error) {
			if !ours {
				// Learned before a restart, or promoted here: the ledger
				// says which, once per digest.
				if foreign, err := s.hasForeign(digest); err != nil || !foreign {
					return false, err
				}
			}
			ctx, cancel := context.WithTimeout(s.base, s.timeout)
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
			s.imported.Put(digest, e.Repository)
			s.mu.Unlock()
			return true, nil
		}
	}
	s.mu.Lock()
	s.local.Put(digest, struct{}{})
	s.mu.Unlock()
	return false, nil
}

func (s *Source) recent(repository, digest string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.synced.Get(repository + "@" + digest)
	return ok && s.now().Sub(t) < s.refresh
}

func (s *Source) sync(ctx context.Context, repository, digest string) (bool, error) {
	entries, err := s.fetch.ForeignEntries(ctx, repository, digest, s.keys)
	if err != nil {
		return false, fmt.Errorf("federation: the registry could not be reached for %s@%s: %w", repository, digest, err)
	}
	// The repository that counts is the one in the signed statement, where
	// the promoting stagegate attaches its revocations too: a copy of the
	// image under attacker/mirror with only the promotions attached must
	// not hide them. Read every statement's repository as well.
	more, err := s.statementRepositories(ctx, repository, digest, entries)
	if err != nil {
		return false, err
	}
	entries = append(entries, more...)
	known, err := s.ledger.History(digest)
	if err != nil {
		return false, err
	}
	// A revocation of a platform is attested on the platform's digest, not
	// on the index's: read those too, or a pod naming the index would run
	// a platform revoked elsewhere.
	platforms := platformsOf(digest, entries, known)
	plat, err := s.platformEntries(ctx, repository, platforms)
	if err != nil {
		return false, err
	}
	entries = append(entries, plat...)
	// From here to the last append, the ledger is read and written as one
	// step; the registry is not asked again.
	s.importMu.Lock()
	defer s.importMu.Unlock()
	if known, err = s.ledger.History(digest); err != nil {
		return false, err
	}
	// In their source's order, so that the ledger folds them as their
	// ledger did: by signed time, and within one instant by the index the
	// source gave them (a revocation after a promotion when it has none).
	sort.SliceStable(entries, func(i, j int) bool { return sourceBefore(entries[i], entries[j]) })
	have := map[string]bool{}
	revoked := revocations{}
	for _, e := range known {
		have[statementKey(e.Envelope)] = true
		revoked.add(e)
	}
	for _, p := range platforms {
		hist, err := s.ledger.History(p)
		if err != nil {
			return false, err
		}
		for _, e := range hist {
			have[statementKey(e.Envelope)] = true
			revoked.add(e)
		}
	}
	imported := false
	for _, e := range entries {
		// Idempotent on the signed statement, not on the envelope's bytes:
		// a re-serialised copy of the same attestation is the same entry.
		key := statementKey(e.Envelope)
		if have[key] {
			continue
		}
		// A promotion signed before a revocation this ledger knows (its
		// own, or one imported earlier) is history, not news: whoever can
		// write to the registry could otherwise show the revocation first
		// and the older promotions after it, and undo it here.
		if by, ok := revoked.supersedes(e); ok {
			s.log.Warn("ignored a foreign promotion older than a known revocation", "digest", e.Digest, "stage", e.Stage,
				"promotedAt", e.Time, "revokedAt", by.Time, "repository", repository)
			have[key] = true
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
		have[key] = true
		revoked.add(e)
		imported = true
		s.log.Info("imported a foreign entry from the registry", "kind", e.Kind, "digest", e.Digest, "stage", e.Stage, "repository", repository)
	}
	s.mu.Lock()
	s.synced.Put(repository+"@"+digest, s.now())
	if _, ok := s.imported.Get(digest); imported || ok {
		s.imported.Put(digest, repository)
	}
	s.mu.Unlock()
	return imported, nil
}

// statementRepositories reads the attestations of digest in each
// repository that the fetched statements name and that was not read yet.
// A failure fails the sync: a revocation that could not be read must not
// pass for none.
func (s *Source) statementRepositories(ctx context.Context, read, digest string, entries []ledger.Entry) ([]ledger.Entry, error) {
	var out []ledger.Entry
	done := map[string]bool{read: true}
	for _, e := range entries {
		if e.Repository == "" || done[e.Repository] {
			continue
		}
		done[e.Repository] = true
		es, err := s.fetch.ForeignEntries(ctx, e.Repository, digest, s.keys)
		if err != nil {
			return nil, fmt.Errorf("federation: the registry could not be reached for %s@%s, the repository its attestation names: %w", e.Repository, digest, err)
		}
		out = append(out, es...)
	}
	return out, nil
}

// revocations are the newest revocation per digest and stage.
type revocations map[[2]string]ledger.Entry

func (r revocations) add(e ledger.Entry) {
	if e.Kind != ledger.KindRevocation {
		return
	}
	k := [2]string{e.Digest, e.Stage}
	if old, ok := r[k]; !ok || sourceBefore(old, e) {
		r[k] = e
	}
}

// supersedes returns the revocation, of e's stage or of every stage, that
// is not before promotion e in its source's order.
func (r revocations) supersedes(e ledger.Entry) (ledger.Entry, bool) {
	if e.Kind != ledger.KindPromotion {
		return ledger.Entry{}, false
	}
	for _, st := range []string{e.Stage, ledger.AllStages} {
		if rev, ok := r[[2]string{e.Digest, st}]; ok && !sourceBefore(rev, e) {
			return rev, true
		}
	}
	return ledger.Entry{}, false
}

// sourceBefore orders entries as their source ledger did: by signed time,
// and within one instant by the ledger index in their predicates, when
// both are foreign (an index of this ledger and one of another do not
// compare). Without that, a revocation goes after a promotion of the same
// instant: when in doubt, revoked.
func sourceBefore(a, b ledger.Entry) bool {
	if !a.Time.Equal(b.Time) {
		return a.Time.Before(b.Time)
	}
	if a.Foreign && b.Foreign {
		ia, oka := signing.SourceIndex(a.Envelope)
		ib, okb := signing.SourceIndex(b.Envelope)
		if oka && okb && ia != ib {
			return ia < ib
		}
	}
	return a.Kind == ledger.KindPromotion && b.Kind == ledger.KindRevocation
}

// statementKey names the signed statement of a DSSE envelope: its payload
// type and decoded payload. The envelope's JSON can be re-serialised (key
// order, spacing, escapes) and signatures added without changing it.
func statementKey(env []byte) string {
	var e struct {
		PayloadType string `json:"payloadType"`
		Payload     []byte `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil || len(e.Payload) == 0 {
		sum := sha256.Sum256(env)
		return "raw:" + hex.EncodeToString(sum[:])
	}
	sum := sha256.Sum256(append([]byte(e.PayloadType+"\x00"), e.Payload...))
	return hex.EncodeToString(sum[:])
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
