package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
)

// StateLookup is the ledger as admission uses it: one read per digest.
type StateLookup interface {
	State(digest, stage string) (ledger.State, bool, error)
}

// Policy is the admission policy (package stagegate.admission).
type Policy interface {
	Admission(ctx context.Context, in policy.AdmissionInput) (policy.AdmissionDecision, error)
}

// Resolver learns the digest a tag points to, from its registry.
type Resolver interface {
	Digest(ctx context.Context, ref string) (string, error)
}

// Recorder records break-glass admissions in the ledger and returns the
// entry's index.
type Recorder interface {
	RecordBreakGlass(ctx context.Context, bg promotion.BreakGlass) (index uint64, err error)
}

// Fallback learns about digests the ledger does not know, e.g. from
// attestations another stagegate left in the registry (internal/federation).
type Fallback interface {
	// Lookup is called on a ledger miss and reports whether it recorded
	// something new.
	Lookup(ctx context.Context, repository, digest string) (bool, error)
	// Seen is called on a ledger hit; it must not block.
	Seen(repository, digest string)
	// Fresh is asked before a promotion it imported counts in stage; an
	// error (e.g. the source's revocation list is too old) refuses the
	// image with its text, whatever the policy says. It must not block.
	Fresh(stage string) error
}

// Metrics counts decisions; prometheus wiring lives elsewhere.
type Metrics interface {
	Decision(stage, result string)
}

// Results passed to Metrics.Decision.
const (
	ResultAllowed    = "allowed"
	ResultDenied     = "denied"
	ResultWarned     = "warned"
	ResultAudited    = "audited"
	ResultBreakGlass = "break-glass"
	ResultError      = "error"
)

// Mode says what a stage does with a policy denial.
type Mode string

// The modes of a stage. An unrecognised mode enforces: when in doubt, refuse.
const (
	ModeEnforce Mode = "enforce"
	ModeWarn    Mode = "warn"
	ModeAudit   Mode = "audit"
)

// Audit annotation keys of a break-glass admission. The API server prefixes
// them with the webhook's name ("<webhook>/break-glass"), and refuses keys
// that already hold a "/", so they carry no "stagegate.dev/" prefix.
const (
	AuditBreakGlass  = "break-glass"
	AuditLedgerIndex = "ledger-index"
)

// Reviewer makes admission decisions. It is safe for concurrent use.
type Reviewer struct {
	states   StateLookup
	policy   Policy
	resolver Resolver
	recorder Recorder
	modes    map[string]Mode
	stages   []string
	log      *slog.Logger
	metrics  Metrics
	fallback Fallback
	sources  Sources
	refs     refCache
	// timeout bounds a whole review; maxImages bounds its work.
	timeout   time.Duration
	maxImages int
	glass     *breakGlassGuard
	// glassRules restrict break-glass per stage (WithBreakGlassRules).
	glassRules map[string]BreakGlassRule
}

type options struct {
	resolver     Resolver
	cacheSize    int
	ttl, errTTL  time.Duration
	timeout      time.Duration
	recorder     Recorder
	modes        map[string]Mode
	stages       []string
	log          *slog.Logger
	metrics      Metrics
	fallback     Fallback
	cacheEnabled bool
	reviewTO     time.Duration
	maxImages    int
	now          func() time.Time
	glassRules   map[string]BreakGlassRule
	sources      Sources
}

// Option configures a Reviewer.
type Option func(*options)

// WithResolver lets the Reviewer learn the digest of images referenced by
// tag. The resolver is wrapped in a bounded cache with a TTL (see
// WithResolverCache); errors are cached briefly too.
func WithResolver(res Resolver) Option { return func(o *options) { o.resolver = res } }

// WithResolverCache sets the size and TTLs of the resolver cache. A TTL of
// zero disables caching of that kind of answer.
func WithResolverCache(size int, ttl, errTTL time.Duration) Option {
	return func(o *options) { o.cacheSize, o.ttl, o.errTTL = size, ttl, errTTL }
}

// WithResolverTimeout bounds one registry call.
func WithResolverTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithReviewTimeout bounds a whole review (default DefaultReviewTimeout).
// Keep it below the webhook's timeoutSeconds, so that the API server gets
// stagegate's own refusal, naming the image it could not learn, instead of
// a bare "context deadline exceeded". Zero or less disables the bound.
func WithReviewTimeout(d time.Duration) Option { return func(o *options) { o.reviewTO = d } }

// WithMaxImages caps the images (containers, init and ephemeral containers,
// image volumes) one review checks (default DefaultMaxImages); a workload
// naming more is refused.
func WithMaxImages(n int) Option { return func(o *options) { o.maxImages = n } }

// WithRecorder records break-glass admissions. Without it, break-glass is
// refused, since nothing is admitted by break-glass without a record.
func WithRecorder(rec Recorder) Option { return func(o *options) { o.recorder = rec } }

// WithModes sets the mode per stage; stages not listed enforce.
func WithModes(m map[string]Mode) Option { return func(o *options) { o.modes = m } }

// WithStages sets the known stages. A review for any other stage fails
// closed. Without it, any non-empty stage is accepted.
func WithStages(stages []string) Option { return func(o *options) { o.stages = stages } }

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithFallback asks f about digests the ledger does not know.
func WithFallback(f Fallback) Option { return func(o *options) { o.fallback = f } }

// WithClock sets the clock of the break-glass guard and of breakGlassMaxAge
// (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// WithMetrics counts decisions.
func WithMetrics(m Metrics) Option { return func(o *options) { o.metrics = m } }

// NewReviewer returns a Reviewer that reads digests' state from states and
// decides with pol.
func NewReviewer(states StateLookup, pol Policy, opts ...Option) *Reviewer {
	o := options{
		cacheSize: DefaultResolverCacheSize,
		ttl:       DefaultResolverTTL,
		errTTL:    DefaultResolverErrorTTL,
		timeout:   DefaultResolverTimeout,
		reviewTO:  DefaultReviewTimeout,
		maxImages: DefaultMaxImages,
	}
	for _, opt := range opts {
		opt(&o)
	}
	r := &Reviewer{
		states:   states,
		policy:   pol,
		recorder: o.recorder,
		modes:    make(map[string]Mode, len(o.modes)),
		stages:   slices.Clone(o.stages),
		log:      o.log,
		metrics:  o.metrics,
		fallback: o.fallback,
		sources:  o.sources,
		timeout:  o.reviewTO,
	}
	if o.now == nil {
		o.now = time.Now
	}
	r.glass = newBreakGlassGuard(o.now)
	r.glassRules = o.glassRules
	r.maxImages = o.maxImages
	if r.maxImages <= 0 {
		r.maxImages = DefaultMaxImages
	}
	for k, v := range o.modes {
		r.modes[k] = v
	}
	if o.resolver != nil {
		r.resolver = newCachingResolver(o.resolver, o.cacheSize, o.ttl, o.errTTL, o.timeout)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r
}

func (r *Reviewer) mode(stage string) Mode {
	switch m := r.modes[stage]; m {
	case ModeWarn, ModeAudit:
		return m
	default:
		return ModeEnforce
	}
}

// unknownStageLabel is the metrics label of every stage that is not
// configured, so that made-up stage paths cannot grow /metrics.
const unknownStageLabel = "unknown"

func (r *Reviewer) count(stage, result string) {
	if r.metrics != nil {
		if !r.knownStage(stage) {
			stage = unknownStageLabel
		}
		r.metrics.Decision(stage, result)
	}
}

func (r *Reviewer) knownStage(stage string) bool {
	return stage != "" && (r.stages == nil || slices.Contains(r.stages, stage))
}

// Review decides one admission request for a stage. It never returns nil
// and fails closed: whatever it cannot decide, it denies with a message.
func (r *Reviewer) Review(ctx context.Context, stage string, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return r.review(ctx, stage, req, nil)
}

// review is Review with the request's object possibly decoded already (obj
// not nil), as the webhook does in the pass that decodes the review.
func (r *Reviewer) review(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, obj *workloadObject) *admissionv1.AdmissionResponse {
	return r.reviewFrom(ctx, stage, req, obj, r.sources)
}

// reviewFrom is review with src to look up Flux source objects: the
// Reviewer's, or for check -f those of the manifest too.
func (r *Reviewer) reviewFrom(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, obj *workloadObject, src Sources) *admissionv1.AdmissionResponse {
	if req == nil {
		r.count(stage, ResultError)
		return Denied("", http.StatusBadRequest, fmt.Sprintf("stagegate could not decide: %v: no request", ErrBadReview))
	}
	if !r.knownStage(stage) {
		if t := traceFrom(ctx); t != nil {
			t.UnknownStage = true
		}
		return r.unknownStage(req, obj, strconv.Quote(stage))
	}
	switch req.Operation {
	case admissionv1.Delete, admissionv1.Connect:
		r.count(stage, ResultAllowed)
		return Allowed(req.UID)
	}
	start := time.Now()
	w, resp := r.workload(stage, req, obj, src)
	if resp != nil {
		return resp
	}
	// An object being deleted starts no pod; refusing its updates would
	// only keep the garbage collector from removing its finalizers.
	if len(w.Images) == 0 || (req.Operation == admissionv1.Update && w.Deleting) {
		r.count(stage, ResultAllowed)
		return Allowed(req.UID)
	}
	in, stale, err := r.input(ctx, start, stage, req, w)
	if err != nil {
		r.count(stage, ResultError)
		r.log.Error("admission: ledger lookup failed", "stage", stage, "workload", w.ID(), "err", err)
		return Errored(req.UID, fmt.Errorf("stagegate could not decide for %s in stage %q: %w", w.ID(), stage, err))
	}
	dec, err := r.policy.Admission(ctx, in)
	if err != nil {
		r.count(stage, ResultError)
		r.log.Error("admission: policy evaluation failed", "stage", stage, "workload", w.ID(), "err", err)
		return Errored(req.UID, fmt.Errorf("stagegate could not decide for %s in stage %q: policy: %w", w.ID(), stage, err))
	}
	// Freshness is the registry source's word, not the policy's: a custom
	// policy cannot forget it.
	dec.Deny = append(dec.Deny, stale...)
	if t := traceFrom(ctx); t != nil {
		t.Deny = slices.Clone(dec.Deny)
	}
	return r.decide(ctx, stage, req, w, in, dec)
}

// workload extracts the workload of req, or returns the refusal when it
// cannot be read or names more images than a review checks. Both are the
// client's doing, so they carry 400 and 403, not 500 (which kubectl shows
// as "Internal error occurred").
func (r *Reviewer) workload(stage string, req *admissionv1.AdmissionRequest, obj *workloadObject, src Sources) (workloadInfo, *admissionv1.AdmissionResponse) {
	w, err := extractWorkloadFrom(req, obj, src)
	if err != nil {
		r.count(stage, ResultError)
		r.log.Warn("admission: cannot read workload", "stage", stage, "uid", req.UID, "err", err)
		return w, Denied(req.UID, http.StatusBadRequest, fmt.Sprintf("stagegate refused %s in stage %q: %v", w.ID(), stage, err))
	}
	if len(w.Images) > r.maxImages {
		r.count(stage, ResultDenied)
		r.log.Warn("admission: too many images", "stage", stage, "workload", w.ID(), "images", len(w.Images))
		return w, Denied(req.UID, http.StatusForbidden, fmt.Sprintf("stagegate denied %s in stage %q: %v: it names %d images, and one review checks at most %d (admission.maxImages)",
			w.ID(), stage, ErrTooManyImages, len(w.Images), r.maxImages))
	}
	return w, nil
}

// ReviewUnknownStage decides a request that the webhook configuration sent
// because its namespace or object carries the stage label with a value that
// is no configured stage (e.g. "qa" or "Prod"). Such a namespace is
// enforced, not skipped: every workload with images is refused, naming the
// known stages, and objects without images pass.
func (r *Reviewer) ReviewUnknownStage(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req == nil {
		r.count("", ResultError)
		return Denied("", http.StatusBadRequest, fmt.Sprintf("stagegate could not decide: %v: no request", ErrBadReview))
	}
	return r.unknownStage(req, nil, "")
}

// unknownStage refuses the workload of req for a stage that is not
// configured; what names that stage for the message (the URL's, quoted), ""
// to name the label that routed the request here.
func (r *Reviewer) unknownStage(req *admissionv1.AdmissionRequest, obj *workloadObject, what string) *admissionv1.AdmissionResponse {
	switch req.Operation {
	case admissionv1.Delete, admissionv1.Connect:
		r.count("", ResultAllowed)
		return Allowed(req.UID)
	}
	// An object that cannot be read is refused here too, with the reason
	// that matters more: its stage is unknown.
	w, err := extractWorkloadFrom(req, obj, r.sources)
	if err == nil && len(w.Images) == 0 {
		r.count("", ResultAllowed)
		return Allowed(req.UID)
	}
	if what == "" {
		if v, ok := w.Labels[StageLabel]; ok && !r.knownStage(v) {
			what = fmt.Sprintf("%q in its label %s", v, StageLabel)
		} else {
			what = fmt.Sprintf("in the %s label of namespace %q", StageLabel, w.Namespace)
		}
	}
	r.count("", ResultDenied)
	r.log.Warn("admission for an unknown stage: refused", "stage", what, "workload", w.ID(), "uid", req.UID)
	return Denied(req.UID, http.StatusForbidden, fmt.Sprintf(
		"stagegate denied %s: unknown stage %s (known stages: %s); label the namespace or object %s with one of them",
		w.ID(), what, strings.Join(r.stages, ", "), StageLabel))
}

// input builds the policy input: each image's digest (from the reference or
// the resolver) and its ledger state in the stage. Only ledger errors fail;
// an image whose digest cannot be learned carries the reason in its Error.
//
// The review's deadline (WithReviewTimeout, counted from start) bounds the
// registry calls only, and its context is made on the first one: most
// reviews name digests alone and make none, and a timer per review would
// be work on the admission path for nothing.
//
// stale lists the images whose promotion in the stage was imported from
// the registry and does not count there for want of freshness
// (Fallback.Fresh), each as a denial.
func (r *Reviewer) input(ctx context.Context, start time.Time, stage string, req *admissionv1.AdmissionRequest, w workloadInfo) (in policy.AdmissionInput, stale []string, err error) {
	var netCtx context.Context
	var cancel context.CancelFunc
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	network := func() context.Context {
		if netCtx == nil {
			netCtx = ctx
			if r.timeout > 0 {
				netCtx, cancel = context.WithDeadline(ctx, start.Add(r.timeout))
			}
		}
		return netCtx
	}
	in = policy.AdmissionInput{
		Stage:       stage,
		Operation:   string(req.Operation),
		SubResource: req.SubResource,
		DryRun:      req.DryRun != nil && *req.DryRun,
		User:        policy.Identity{Subject: req.UserInfo.Username, Groups: req.UserInfo.Groups},
		Workload:    w.Workload,
		Images:      make([]policy.ContainerImage, 0, len(w.Images)),
		BreakGlass:  w.BreakGlass,
	}
	type looked struct {
		st    ledger.State
		found bool
	}
	digests := map[string]string{} // resolved reference → digest, or error text after "!"
	states := map[string]looked{}  // digest → state
	trace := traceFrom(ctx)
	for _, c := range w.Images {
		ci := policy.ContainerImage{Container: c.Container, Type: c.Type, Image: policy.Image{Reference: c.Image}}
		ref, err := r.refs.parse(c.Image)
		if c.Err != "" || err != nil {
			ci.Error, ci.Pinned = c.Err, c.NoTag
			if ci.Error == "" {
				ci.Error = fmt.Sprintf("image %q: %v", c.Image, err)
			}
			in.Images = append(in.Images, ci)
			if trace != nil {
				trace.Images = append(trace.Images, TracedImage{Container: c.Container, Image: c.Image, Error: ci.Error})
			}
			continue
		}
		ci.Repository, ci.Tag, ci.Digest = ref.Repository, ref.Tag, ref.Digest
		ci.Pinned = ref.Digest != ""
		if !ci.Pinned {
			if d, ok := digests[ref.Name]; ok {
				ci.Digest, ci.Error = splitResolved(d)
			} else {
				ci.Digest, ci.Error = r.resolve(network(), ref)
				digests[ref.Name] = joinResolved(ci.Digest, ci.Error)
			}
		}
		if ci.Digest != "" {
			l, ok := states[ci.Digest]
			if !ok {
				st, found, err := r.states.State(ci.Digest, stage)
				if err != nil {
					return in, nil, fmt.Errorf("ledger state of %s (%s): %w", c.Image, ci.Digest, err)
				}
				if fb := r.fallback; fb != nil {
					if found {
						fb.Seen(ci.Repository, ci.Digest)
					} else if learned, err := fb.Lookup(network(), ci.Repository, ci.Digest); err != nil {
						return in, nil, fmt.Errorf("image %s (%s) is not in the local ledger, and %w", c.Image, ci.Digest, err)
					} else if learned {
						if st, found, err = r.states.State(ci.Digest, stage); err != nil {
							return in, nil, fmt.Errorf("ledger state of %s (%s): %w", c.Image, ci.Digest, err)
						}
					}
				}
				l = looked{st: st, found: found}
				states[ci.Digest] = l
			}
			if l.found {
				ci.State = promotion.StageState(l.st)
				if len(l.st.Labels) > 0 {
					ci.Labels = l.st.Labels
				}
				if l.st.Active() && l.st.Foreign && r.fallback != nil {
					if err := r.fallback.Fresh(stage); err != nil {
						stale = append(stale, fmt.Sprintf("%s: image %q (%s) was promoted to %q by another stagegate, through the registry, and %v",
							c.subject(), c.Image, ci.Digest, stage, err))
					}
				}
			}
		}
		in.Images = append(in.Images, ci)
		if trace != nil {
			l := states[ci.Digest]
			trace.Images = append(trace.Images, TracedImage{Container: c.Container, Image: c.Image, Digest: ci.Digest, Error: ci.Error, Found: l.found, State: l.st})
		}
	}
	return in, stale, nil
}

func joinResolved(digest, errText string) string {
	if errText != "" {
		return "!" + errText
	}
	return digest
}

func splitResolved(s string) (digest, errText string) {
	if e, ok := strings.CutPrefix(s, "!"); ok {
		return "", e
	}
	return s, ""
}

// resolve asks the registry (through the cache) for a tag's digest. It
// returns the reason instead of an error: the policy decides what an
// unresolvable tag means in the stage.
func (r *Reviewer) resolve(ctx context.Context, ref imageRef) (digest, errText string) {
	if r.resolver == nil {
		return "", fmt.Sprintf("image %s: %v", ref.Name, ErrNoResolver)
	}
	d, err := r.resolver.Digest(ctx, ref.Name)
	if err == nil && !registry.ValidDigest(d) {
		err = fmt.Errorf("registry answered %q, not a sha256 digest", d)
	}
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "", fmt.Sprintf("cannot resolve %s: %v after %s (the registry %s is slow or down)", ref.Name, ErrDeadline, r.timeout, ref.Registry)
	}
	if err != nil {
		return "", fmt.Sprintf("cannot resolve %s: registry %s: %v", ref.Name, ref.Registry, err)
	}
	return d, ""
}

// decide turns the policy's decision into a response, by the stage's mode.
func (r *Reviewer) decide(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, w workloadInfo, in policy.AdmissionInput, dec policy.AdmissionDecision) *admissionv1.AdmissionResponse {
	warnings := slices.Clone(dec.Warn)
	log := r.log.With("stage", stage, "workload", w.ID(), "uid", req.UID, "user", req.UserInfo.Username)
	if len(dec.Deny) == 0 {
		r.count(stage, ResultAllowed)
		log.Debug("admission allowed")
		return Allowed(req.UID, warnings...)
	}
	reasons := strings.Join(dec.Deny, "; ")
	switch r.mode(stage) {
	case ModeWarn:
		r.count(stage, ResultWarned)
		log.Info("admission would be denied; allowed in warn mode", "reasons", reasons)
		for _, d := range dec.Deny {
			warnings = append(warnings, "stagegate (warn mode, not enforced): "+d)
		}
		return Allowed(req.UID, warnings...)
	case ModeAudit:
		r.count(stage, ResultAudited)
		log.Info("admission would be denied; allowed in audit mode", "reasons", reasons)
		return Allowed(req.UID, warnings...)
	}
	if len(w.BreakGlass) > MaxJustification {
		r.count(stage, ResultDenied)
		return Denied(req.UID, http.StatusBadRequest, fmt.Sprintf(
			"stagegate denied %s in stage %q: %s; the %s justification is %d bytes, at most %d are recorded: shorten it (e.g. to an incident link)",
			w.ID(), stage, reasons, BreakGlassAnnotation, len(w.BreakGlass), MaxJustification))
	}
	if w.BreakGlass == "" || !dec.BreakGlassAllowed {
		msg := fmt.Sprintf("stagegate denied %s in stage %q: %s", w.ID(), stage, reasons)
		if w.BreakGlass != "" {
			msg += " (the break-glass annotation is not allowed by policy for this request)"
		}
		r.count(stage, ResultDenied)
		log.Info("admission denied", "reasons", reasons)
		resp := Denied(req.UID, http.StatusForbidden, msg)
		resp.Warnings = warnings
		return resp
	}
	if why := r.breakGlassRefusal(stage, req, w); why != "" {
		r.count(stage, ResultDenied)
		log.Warn("break-glass refused", "why", why, "groups", req.UserInfo.Groups)
		resp := Denied(req.UID, http.StatusForbidden, fmt.Sprintf("stagegate denied %s in stage %q: %s (the break-glass annotation does not count: %s)",
			w.ID(), stage, reasons, why))
		resp.Warnings = warnings
		return resp
	}
	return r.breakGlass(ctx, stage, req, w, in, reasons, warnings, log)
}
