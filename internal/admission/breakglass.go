package admission

import (
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/stagegate/stagegate/internal/lru"
	"github.com/stagegate/stagegate/internal/promotion"
)

// MaxJustification caps the break-glass annotation's justification, which
// goes into a signed ledger entry: a 1 MB annotation once wrote a 2.3 MB
// entry, and three such pods grew the ledger to 57 MB.
const MaxJustification = 1024

// Bounds of the break-glass guard.
const (
	// breakGlassReuse is how long a record covers the same break-glass
	// again: a retried review, the next pod of the same ReplicaSet, a
	// kubectl apply run twice.
	breakGlassReuse = 10 * time.Minute
	// breakGlassRate and breakGlassBurst bound the new records one
	// workload can cause: each is a signed entry kept forever.
	breakGlassRate  = rate.Limit(1.0 / 60)
	breakGlassBurst = 5
	// breakGlassKeys bounds both maps of the guard.
	breakGlassKeys = 4096
)

// breakGlassGuard keeps break-glass from growing the ledger without bound:
// the same break-glass (stage, workload, justification, user, images) is
// recorded once per breakGlassReuse and later admissions name that entry,
// and each workload may cause at most breakGlassBurst new records, then
// one a minute. Both maps are bounded LRUs.
type breakGlassGuard struct {
	mu       sync.Mutex
	now      func() time.Time
	recent   *lru.Map[string, recorded]
	limiters *lru.Map[string, *rate.Limiter]
}

type recorded struct {
	index uint64
	at    time.Time
}

func newBreakGlassGuard(now func() time.Time) *breakGlassGuard {
	return &breakGlassGuard{now: now, recent: lru.New[string, recorded](breakGlassKeys), limiters: lru.New[string, *rate.Limiter](breakGlassKeys)}
}

// breakGlassKey identifies one break-glass: what a record of it says.
func breakGlassKey(bg promotion.BreakGlass) string {
	imgs := slices.Clone(bg.Images)
	slices.Sort(imgs)
	return strings.Join([]string{bg.Stage, bg.Workload, bg.Justification, bg.User, strings.Join(imgs, ",")}, "\x00")
}

// covered returns the index of a recent record of bg.
func (g *breakGlassGuard) covered(bg promotion.BreakGlass) (uint64, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	r, ok := g.recent.Get(breakGlassKey(bg))
	if !ok || g.now().Sub(r.at) > breakGlassReuse {
		return 0, false
	}
	return r.index, true
}

// allow takes a token for a new record of bg's workload.
func (g *breakGlassGuard) allow(bg promotion.BreakGlass) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.limiters.Get(bg.Stage + "\x00" + bg.Workload)
	if !ok {
		l = rate.NewLimiter(breakGlassRate, breakGlassBurst)
		g.limiters.Put(bg.Stage+"\x00"+bg.Workload, l)
	}
	return l.AllowN(g.now(), 1)
}

func (g *breakGlassGuard) remember(bg promotion.BreakGlass, index uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.recent.Put(breakGlassKey(bg), recorded{index: index, at: g.now()})
}
