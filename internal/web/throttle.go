package web

import (
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Failed sign-ins per client address: a burst of signinBurst, then one
// per signinEvery. The form takes a token from anyone, so without this a
// script could guess tokens as fast as the server answers.
const (
	signinBurst = 10
	signinEvery = 6 * time.Second
	// maxThrottled bounds the addresses remembered; those whose bucket
	// is full again are forgotten first.
	maxThrottled = 10000
)

// throttle counts failed sign-ins by client address, on the injected
// clock. Only failures take from the bucket; while it is empty every
// sign-in from the address is refused, a right token too, since letting
// it through would still tell a guesser which guess was right.
type throttle struct {
	mu     sync.Mutex
	now    func() time.Time
	byAddr map[netip.Prefix]*rate.Limiter
}

func newThrottle(now func() time.Time) *throttle {
	return &throttle{now: now, byAddr: map[netip.Prefix]*rate.Limiter{}}
}

// clientKey is the address a request came from: the host, or its /64 for
// IPv6, where one client holds a whole prefix.
func clientKey(remote string) netip.Prefix {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// wait is how long remote must wait before its next sign-in, 0 if none.
func (t *throttle) wait(remote string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	l, ok := t.byAddr[clientKey(remote)]
	if !ok {
		return 0
	}
	r := l.ReserveN(t.now(), 1)
	d := r.DelayFrom(t.now())
	r.CancelAt(t.now())
	return d
}

// failed takes one from remote's bucket.
func (t *throttle) failed(remote string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	k := clientKey(remote)
	l, ok := t.byAddr[k]
	if !ok {
		if len(t.byAddr) >= maxThrottled {
			for a, o := range t.byAddr {
				if o.TokensAt(now) >= signinBurst {
					delete(t.byAddr, a)
				}
			}
		}
		l = rate.NewLimiter(rate.Every(signinEvery), signinBurst)
		// Past the bound even after the sweep, the address is still
		// counted: the map may grow by what an attacker's addresses
		// cost, each a few dozen bytes, and forgets them as they refill.
		t.byAddr[k] = l
	}
	l.AllowN(now, 1)
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(int((d + time.Second - 1) / time.Second))
}
