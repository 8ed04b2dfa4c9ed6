package promotion_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// TestObserver: the observer hears each promotion and revocation recorded,
// with its platforms, once, and not the repeats that record nothing.
func TestObserver(t *testing.T) {
	ref, labels := pushIndex(t)
	l, _ := ledgertest.New(t)
	var seen []ledger.Entry
	svc := promotion.New(l, &recorder{}, allow{}, registry.New(), []string{"dev", "prod"}, pipelineDuties,
		promotion.WithObserver(func(e ledger.Entry) { seen = append(seen, e) }))
	ctx := context.Background()
	for range 2 {
		if _, err := svc.Promote(ctx, promotion.Request{Image: ref, Stage: "dev", Requester: requester}); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != 1 || seen[0].Kind != ledger.KindPromotion || len(seen[0].Platforms) != len(labels) {
		t.Fatalf("after two promotions of the same digest, observed %+v, want one promotion with %d platforms", seen, len(labels))
	}
	for _, p := range seen[0].Platforms {
		if _, ok := labels[p]; !ok {
			t.Fatalf("observed platform %s is not one of the index's", p)
		}
	}
	index := seen[0].Digest
	for range 2 {
		if _, err := svc.Revoke(ctx, promotion.Revocation{Digest: index, Stage: "dev", Reason: "CVE", Requester: requester}); err != nil {
			t.Fatal(err)
		}
	}
	kinds := []ledger.Kind{}
	for _, e := range seen {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Equal(kinds, []ledger.Kind{ledger.KindPromotion, ledger.KindRevocation}) || seen[1].Digest != index {
		t.Fatalf("observed %v (%+v), want a promotion then one revocation of %s", kinds, seen, index)
	}
}
