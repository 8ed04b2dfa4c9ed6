package ha

import (
	"slices"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
)

// A follower's webhook admits a break-glass workload as the leader's
// would, and the leader records it: the entry is in every ledger.
func TestBreakGlassOnAFollower(t *testing.T) {
	h := newHA(t, 3)
	lead := h.leader(0)
	f := (lead + 1) % len(h.nodes)
	image := must(h.pushImage("app")) // never promoted
	r, err := h.admitWith(f, "dev", image, map[string]string{"stagegate.dev/break-glass": "incident 42: hotfix"})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Allowed {
		t.Fatalf("%s refused the break-glass workload: %+v", h.ids[f], r.Result)
	}
	for i := range h.nodes {
		h.waitFor(h.ids[i]+" to hold the break-glass entry", func() bool {
			return slices.ContainsFunc(h.entries(i), func(e ledger.Entry) bool {
				return e.Kind == ledger.KindBreakGlass && strings.HasPrefix(e.Workload, "team-a/Pod/") && e.Reason == "incident 42: hotfix"
			})
		})
	}
}
