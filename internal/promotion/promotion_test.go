package promotion_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// allow is a policy that allows every promotion.
type allow struct{}

func (allow) Promotion(context.Context, policy.PromotionInput) ([]string, error) { return nil, nil }
func (allow) Digest() string                                                     { return "sha256:" + strings.Repeat("0", 64) }

// recorder signs nothing: it keeps the statements and returns an envelope
// of the right shape.
type recorder struct {
	mu  sync.Mutex
	sts []signing.Statement
}

func (r *recorder) Sign(st signing.Statement) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sts = append(r.sts, st)
	return []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`), nil
}

func (r *recorder) last() signing.Statement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sts[len(r.sts)-1]
}

func labelledImage(t *testing.T, arch string, labels map[string]string) v1.Image {
	t.Helper()
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", arch
	cf.Config.Labels = labels
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	return img
}

// pushIndex pushes a two-platform index whose platforms have different
// labels to an in-process registry, and returns its reference and the
// platforms' digests and labels.
func pushIndex(t *testing.T) (string, map[string]map[string]string) {
	t.Helper()
	reg, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	labels := map[string]map[string]string{}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img := labelledImage(t, arch, map[string]string{"team": "a", "arch": arch})
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		labels[d.String()] = map[string]string{"team": "a", "arch": arch}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	ref := reg.Host + "/shop/cart:1.0"
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	return ref, labels
}

var requester = policy.Identity{Subject: "ci", Groups: []string{"pipeline"}}

// pipelineDuties lets the pipeline group revoke and override in every stage
// of the tests.
var pipelineDuties = promotion.WithDuties(map[string]promotion.Duties{
	"dev":  {Revoke: []string{"pipeline"}, OverrideRevocation: []string{"pipeline"}},
	"test": {Revoke: []string{"pipeline"}, OverrideRevocation: []string{"pipeline"}},
	"prod": {Revoke: []string{"pipeline"}, OverrideRevocation: []string{"pipeline"}},
})

// TestPromoteIndexRecordsPlatformLabels: each platform's state carries
// its own image labels, the index those they share, and the signed
// predicate says the same.
func TestPromoteIndexRecordsPlatformLabels(t *testing.T) {
	ref, labels := pushIndex(t)
	l, _ := ledgertest.New(t)
	rec := &recorder{}
	svc := promotion.New(l, rec, allow{}, registry.New(), []string{"dev", "prod"})
	res, err := svc.Promote(context.Background(), promotion.Request{Image: ref, Stage: "dev", Requester: requester})
	if err != nil {
		t.Fatal(err)
	}
	e := res.Receipt.Entry
	if len(e.Platforms) != 2 || len(e.PlatformLabels) != 2 {
		t.Fatalf("entry platforms %v, platform labels %v", e.Platforms, e.PlatformLabels)
	}
	want := map[string]map[string]string{e.Digest: {"team": "a"}}
	maps.Copy(want, labels)
	for d, w := range want {
		st, _, err := l.State(d, "dev")
		if err != nil || !st.Active() {
			t.Fatalf("State(%s) = %+v, %v", d, st, err)
		}
		if !maps.Equal(st.Labels, w) {
			t.Errorf("labels of %s = %v, want %v", d, st.Labels, w)
		}
	}
	var pred signing.PromotionPredicate
	if err := json.Unmarshal(rec.last().Predicate, &pred); err != nil {
		t.Fatal(err)
	}
	for p, w := range labels {
		if !maps.Equal(pred.PlatformLabels[p], w) {
			t.Errorf("predicate labels of %s = %v, want %v", p, pred.PlatformLabels[p], w)
		}
	}
}

// TestRevokePlatformOfIndex goes through the service: a platform's
// revocation revokes the index; promoting the index again is refused
// while the platform is revoked; the index can still be revoked itself,
// which reaches its other platform.
func TestRevokePlatformOfIndex(t *testing.T) {
	ref, _ := pushIndex(t)
	l, _ := ledgertest.New(t)
	svc := promotion.New(l, &recorder{}, allow{}, registry.New(), []string{"dev", "prod"}, pipelineDuties)
	ctx := context.Background()
	res, err := svc.Promote(ctx, promotion.Request{Image: ref, Stage: "dev", Requester: requester})
	if err != nil {
		t.Fatal(err)
	}
	index, p1, p2 := res.Receipt.Entry.Digest, res.Receipt.Entry.Platforms[0], res.Receipt.Entry.Platforms[1]
	revoke := func(d string) promotion.Result {
		t.Helper()
		rv, err := svc.Revoke(ctx, promotion.Revocation{Digest: d, Stage: "dev", Reason: "CVE", Requester: requester})
		if err != nil {
			t.Fatalf("Revoke(%s): %v", d, err)
		}
		return rv
	}
	state := func(d string) ledger.State {
		t.Helper()
		st, _, err := l.State(d, "dev")
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	rv := revoke(p1)
	if st := state(index); st.Active() || st.RevokedIndex != rv.Receipt.Entry.Index || st.RevokedDigest != p1 {
		t.Fatalf("index after its platform's revocation: %+v", st)
	}
	if st := state(p2); !st.Active() {
		t.Fatalf("other platform: %+v", st)
	}

	_, err = svc.Promote(ctx, promotion.Request{Image: ref, Stage: "dev", Requester: requester})
	var denied *promotion.DeniedError
	if !errors.As(err, &denied) || !strings.Contains(err.Error(), p1) {
		t.Fatalf("promoting the index again: %v, want a denial naming %s", err, p1)
	}

	if rv := revoke(index); !rv.Created {
		t.Fatal("revoking the index itself was taken for a repeat")
	}
	if st := state(p2); st.Active() || st.RevokedDigest != index {
		t.Fatalf("other platform after the index's revocation: %+v", st)
	}
	if rv := revoke(index); rv.Created {
		t.Fatal("a second revocation of the index was recorded")
	}
}

// TestRequestsAreBounded: what goes into a signed entry kept forever is
// bounded, and a refused request writes nothing.
func TestRequestsAreBounded(t *testing.T) {
	l, _ := ledgertest.New(t)
	ref, _ := pushIndex(t)
	svc := promotion.New(l, &recorder{}, allow{}, registry.New(), []string{"dev", "prod"})
	big := strings.Repeat("x", 2000)
	tests := map[string]func() error{
		"promotion reason": func() error {
			_, err := svc.Promote(context.Background(), promotion.Request{Image: ref, Stage: "dev", Reason: big, Requester: requester})
			return err
		},
		"promotion evidence": func() error {
			_, err := svc.Promote(context.Background(), promotion.Request{Image: ref, Stage: "dev", Requester: requester,
				Evidence: map[string]any{"blob": strings.Repeat("y", 20<<10)}})
			return err
		},
		"break-glass justification": func() error {
			_, err := svc.RecordBreakGlass(context.Background(), promotion.BreakGlass{Stage: "dev", Workload: "ns/Pod/p", Justification: big})
			return err
		},
		"break-glass with a control character": func() error {
			_, err := svc.RecordBreakGlass(context.Background(), promotion.BreakGlass{Stage: "dev", Workload: "ns/Pod/p", Justification: "ok\nforged log line"})
			return err
		},
		"break-glass images": func() error {
			imgs := make([]string, 200)
			for i := range imgs {
				imgs[i] = "reg/app:1"
			}
			_, err := svc.RecordBreakGlass(context.Background(), promotion.BreakGlass{Stage: "dev", Workload: "ns/Pod/p", Justification: "INC-1", Images: imgs})
			return err
		},
		"break-glass workload name": func() error {
			_, err := svc.RecordBreakGlass(context.Background(), promotion.BreakGlass{Stage: "dev", Workload: big, Justification: "INC-1"})
			return err
		},
	}
	for name, do := range tests {
		t.Run(name, func(t *testing.T) {
			if err := do(); !errors.Is(err, promotion.ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			if n, err := l.Size(); err != nil || n != 0 {
				t.Fatalf("ledger size = %d (%v) after a refused request", n, err)
			}
		})
	}
	// Within the bounds, both are recorded.
	if _, err := svc.RecordBreakGlass(context.Background(), promotion.BreakGlass{Stage: "dev", Workload: "ns/Pod/p", Justification: "INC-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Promote(context.Background(), promotion.Request{Image: ref, Stage: "dev", Reason: "ok", Requester: requester,
		Evidence: map[string]any{"build": "https://ci.example/42"}}); err != nil {
		t.Fatal(err)
	}
}
