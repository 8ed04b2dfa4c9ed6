package promotion_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
)

// The fakes below stand in for the service's interface dependencies. The
// ledger is the real one (ledgertest), wrapped only where a test needs a
// fault the real ledger cannot be made to produce on demand.

// digestOf names a fake image by the sha256 of s.
func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// fakeResolver answers from a fixed table; a reference it does not know is
// registry.ErrNotFound, as the real client says of a missing manifest.
type fakeResolver struct {
	images map[string]registry.Resolved
	err    error // returned for every reference when set
}

func (f *fakeResolver) Resolve(_ context.Context, ref string) (registry.Resolved, error) {
	if f.err != nil {
		return registry.Resolved{}, f.err
	}
	img, ok := f.images[ref]
	if !ok {
		return registry.Resolved{}, fmt.Errorf("registry: %s: %w", ref, registry.ErrNotFound)
	}
	return img, nil
}

// fakePolicy denies with its violations (or fails with err) and keeps
// every input it was asked about.
type fakePolicy struct {
	mu         sync.Mutex
	violations []string
	err        error
	inputs     []policy.PromotionInput
}

const fakePolicyDigest = "sha256:5e1f0000000000000000000000000000000000000000000000000000000000aa"

func (p *fakePolicy) Promotion(_ context.Context, in policy.PromotionInput) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inputs = append(p.inputs, in)
	return p.violations, p.err
}

func (p *fakePolicy) Digest() string { return fakePolicyDigest }

func (p *fakePolicy) set(violations []string, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.violations, p.err = violations, err
}

func (p *fakePolicy) last(t *testing.T) policy.PromotionInput {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inputs) == 0 {
		t.Fatal("the policy was never asked")
	}
	return p.inputs[len(p.inputs)-1]
}

func (p *fakePolicy) asked() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.inputs)
}

// fakeSigner keeps the statements it is given and returns an envelope of
// the right shape; with err set it signs nothing.
type fakeSigner struct {
	mu  sync.Mutex
	err error
	sts []signing.Statement
}

func (s *fakeSigner) Sign(st signing.Statement) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return nil, s.err
	}
	s.sts = append(s.sts, st)
	return []byte(`{"payloadType":"application/vnd.in-toto+json","payload":"e30=","signatures":[]}`), nil
}

func (s *fakeSigner) last(t *testing.T) signing.Statement {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sts) == 0 {
		t.Fatal("nothing was signed")
	}
	return s.sts[len(s.sts)-1]
}

// fakeRegistry records what the service asks of the registry, in order, as
// "attach repo@digest", "tag repo@digest tag", "copy repo@digest dst" and
// "evidence repo@digest". Errors are per repository (attach, tag) or
// global (copy, evidence).
type fakeRegistry struct {
	mu          sync.Mutex
	calls       []string
	attachErr   map[string]error
	tagErr      map[string]error
	copyErr     error
	envelopes   [][]byte // attached to every image
	evidenceErr error
}

func (r *fakeRegistry) record(call string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, call)
}

func (r *fakeRegistry) Attach(_ context.Context, repo, digest string, envelope []byte) error {
	r.record("attach " + repo + "@" + digest)
	if !json.Valid(envelope) {
		return errors.New("fake registry: attach of an envelope that is not JSON")
	}
	return r.attachErr[repo]
}

func (r *fakeRegistry) MoveTag(_ context.Context, repo, digest, tag string) error {
	r.record("tag " + repo + "@" + digest + " " + tag)
	return r.tagErr[repo]
}

func (r *fakeRegistry) Copy(_ context.Context, src, digest, dst string, _ oci.Progress) error {
	r.record("copy " + src + "@" + digest + " " + dst)
	return r.copyErr
}

func (r *fakeRegistry) Attestations(_ context.Context, repo, digest string) ([][]byte, error) {
	r.record("evidence " + repo + "@" + digest)
	return r.envelopes, r.evidenceErr
}

// took returns the calls so far and forgets them.
func (r *fakeRegistry) took() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls = nil
	return c
}

// faultLedger is the real ledger, except that State fails for the digests
// in stateErr (in every stage), as a record that does not decode makes it
// fail, and that Append fails with appendErr when it is set.
type faultLedger struct {
	*ledger.Ledger
	stateErr  map[string]error
	appendErr error
}

func (f *faultLedger) Append(build ledger.BuildFunc) (ledger.Receipt, error) {
	if f.appendErr != nil {
		return ledger.Receipt{}, f.appendErr
	}
	return f.Ledger.Append(func(r ledger.Reader, index uint64) (*ledger.Entry, error) {
		return build(faultReader{Reader: r, errs: f.stateErr}, index)
	})
}

func (f *faultLedger) AppendAll(build ledger.BuildAllFunc) ([]ledger.Receipt, error) {
	if f.appendErr != nil {
		return nil, f.appendErr
	}
	return f.Ledger.AppendAll(func(r ledger.Reader, next uint64) ([]*ledger.Entry, error) {
		return build(faultReader{Reader: r, errs: f.stateErr}, next)
	})
}

func (f *faultLedger) View(fn func(ledger.Reader) error) error {
	return f.Ledger.View(func(r ledger.Reader) error { return fn(faultReader{Reader: r, errs: f.stateErr}) })
}

type faultReader struct {
	ledger.Reader
	errs map[string]error
}

func (r faultReader) State(digest, stage string) (ledger.State, bool, error) {
	if err := r.errs[digest]; err != nil {
		return ledger.State{}, false, err
	}
	return r.Reader.State(digest, stage)
}

// Fixed names used across the tests.
const (
	repoApp    = "reg.example/shop/app"
	repoMirror = "mirror.example/shop/app"
	refApp     = repoApp + ":1.0"
	refIndex   = repoApp + ":multi"
	refOther   = repoApp + ":other-index"
)

var (
	digestApp = digestOf("app")
	// Two indexes that share platform p1.
	digestIndex = digestOf("index")
	digestOther = digestOf("other index")
	p1, p2, p3  = digestOf("p1"), digestOf("p2"), digestOf("p3")

	t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	ci = policy.Identity{Subject: "ci", Groups: []string{"pipeline"}}

	stages = []string{"dev", "test", "prod"}
)

func images() map[string]registry.Resolved {
	return map[string]registry.Resolved{
		refApp: {Reference: refApp, Repository: repoApp, Tag: "1.0", Digest: digestApp,
			Labels: map[string]string{"team": "shop"}},
		refIndex: {Reference: refIndex, Repository: repoApp, Tag: "multi", Digest: digestIndex,
			Platforms: []string{p1, p2}},
		refOther: {Reference: refOther, Repository: repoApp, Tag: "other-index", Digest: digestOther,
			Platforms: []string{p1, p3}},
	}
}

// env is one service over a fresh ledger with fakes it can reach into.
type env struct {
	ledger   *ledger.Ledger
	logKey   note.Verifier
	faults   *faultLedger
	resolver *fakeResolver
	policy   *fakePolicy
	signer   *fakeSigner
	registry *fakeRegistry
	svc      *promotion.Service
}

// newEnv builds a service. With stageOpts nil the service has no
// registry; otherwise it publishes through env.registry with those options.
func newEnv(t *testing.T, stageOpts map[string]promotion.StageOptions, opts ...promotion.Option) *env {
	t.Helper()
	l, lv := ledgertest.New(t)
	e := &env{
		ledger:   l,
		logKey:   lv,
		faults:   &faultLedger{Ledger: l},
		resolver: &fakeResolver{images: images()},
		policy:   &fakePolicy{},
		signer:   &fakeSigner{},
		registry: &fakeRegistry{},
	}
	all := []promotion.Option{promotion.WithClock(func() time.Time { return t0 }), pipelineDuties}
	if stageOpts != nil {
		all = append(all, promotion.WithRegistry(e.registry, stageOpts, []*signing.Verifier{signingtest.Verifier(t)}))
	}
	e.svc = promotion.New(e.faults, e.signer, e.policy, e.resolver, stages, append(all, opts...)...)
	return e
}

func (e *env) size(t *testing.T) uint64 {
	t.Helper()
	n, err := e.ledger.Size()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) state(t *testing.T, digest, stage string) ledger.State {
	t.Helper()
	st, _, err := e.ledger.State(digest, stage)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) promote(t *testing.T, ref, stage string) promotion.Result {
	t.Helper()
	res, err := e.svc.Promote(context.Background(), promotion.Request{Image: ref, Stage: stage, Requester: ci})
	if err != nil {
		t.Fatalf("Promote(%s, %s): %v", ref, stage, err)
	}
	return res
}

func (e *env) revoke(t *testing.T, digest, stage string) promotion.Result {
	t.Helper()
	res, err := e.svc.Revoke(context.Background(), promotion.Revocation{Digest: digest, Stage: stage, Reason: "CVE-1", Requester: ci})
	if err != nil {
		t.Fatalf("Revoke(%s, %s): %v", digest, stage, err)
	}
	return res
}

func decodePredicate(t *testing.T, st signing.Statement, into any) {
	t.Helper()
	if err := json.Unmarshal(st.Predicate, into); err != nil {
		t.Fatalf("predicate: %v", err)
	}
}

func subjectOf(st signing.Statement) string {
	if len(st.Subject) != 1 {
		return fmt.Sprintf("%d subjects", len(st.Subject))
	}
	return st.Subject[0].Name + "@sha256:" + st.Subject[0].Digest["sha256"]
}

func sameCalls(got, want []string) bool { return slices.Equal(got, want) }

func callsString(c []string) string { return "[" + strings.Join(c, "; ") + "]" }

func (e *env) checkpoint(t *testing.T) string {
	t.Helper()
	cp, err := e.ledger.Checkpoint()
	if err != nil {
		t.Fatal(err)
	}
	return cp
}

// HistoryPage passes through to the real reader's history.
func (r faultReader) HistoryPage(name string, start uint64, limit, maxBytes int) ([]ledger.Entry, bool, error) {
	hr, ok := r.Reader.(ledger.HistoryReader)
	if !ok {
		return nil, false, errors.New("faultReader: no history")
	}
	return hr.HistoryPage(name, start, limit, maxBytes)
}
