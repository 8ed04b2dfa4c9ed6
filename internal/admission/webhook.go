package admission

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"sync"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "sigs.k8s.io/json"
)

// MaxBodyBytes is the default cap of a review body: the API server's own
// limit on a request body is 3 MiB, so no genuine review is larger.
const MaxBodyBytes = 3 << 20

// ValidatePath is the route of the webhook; {stage} is the stage to enforce.
const ValidatePath = "/admission/validate/{stage}"

// UnknownStagePath is the route the webhook configuration sends namespaces
// and objects to whose stage label names no configured stage.
const UnknownStagePath = "/admission/unknown-stage"

// The AdmissionReview version the webhook speaks.
const (
	reviewAPIVersion = "admission.k8s.io/v1"
	reviewKind       = "AdmissionReview"
)

type handlerOptions struct {
	maxBody int64
	log     *slog.Logger
}

// HandlerOption configures the webhook handler.
type HandlerOption func(*handlerOptions)

// WithMaxBodyBytes caps the size of a review body (default MaxBodyBytes).
func WithMaxBodyBytes(n int64) HandlerOption { return func(o *handlerOptions) { o.maxBody = n } }

// WithHandlerLogger sets the handler's logger; the default discards.
func WithHandlerLogger(l *slog.Logger) HandlerOption { return func(o *handlerOptions) { o.log = l } }

// NewHandler serves the webhook's routes: "POST /admission/validate/{stage}",
// "POST /admission/unknown-stage" and the mutating "POST
// /admission/mutate/{stage}". It always answers a review request with HTTP
// 200 and an AdmissionReview, even when the request is malformed or the
// Reviewer panics: the API server then shows our message instead of a bare
// "failed calling webhook", and fails closed either way.
func NewHandler(r *Reviewer, opts ...HandlerOption) http.Handler {
	o := handlerOptions{maxBody: MaxBodyBytes}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	h := &handler{reviewer: r, opts: o}
	mux := http.NewServeMux()
	mux.Handle("POST "+ValidatePath, h.route(func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, obj *workloadObject) *admissionv1.AdmissionResponse {
		return r.review(ctx, stage, req, obj)
	}, true))
	mux.Handle("POST "+UnknownStagePath, h.route(func(ctx context.Context, _ string, req *admissionv1.AdmissionRequest, _ *workloadObject) *admissionv1.AdmissionResponse {
		return r.ReviewUnknownStage(ctx, req)
	}, false))
	mux.Handle("POST "+MutatePath, h.route(func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, _ *workloadObject) *admissionv1.AdmissionResponse {
		return r.Pin(ctx, stage, req)
	}, false))
	return mux
}

// decideFunc answers one decoded request; obj is its object already
// decoded, or nil.
type decideFunc func(ctx context.Context, stage string, req *admissionv1.AdmissionRequest, obj *workloadObject) *admissionv1.AdmissionResponse

// route serves one route with decide; fast says whether decide can take the
// object decoded in the same pass as the review.
func (h *handler) route(decide decideFunc, fast bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		h.serve(w, req, decide, fast)
	})
}

type handler struct {
	reviewer *Reviewer
	opts     handlerOptions
	// bodies holds request body buffers between reviews: reading each body
	// into a fresh slice was a quarter of the bytes a review allocated, and
	// so of the collector's work on the admission path. Nothing decoded
	// from a body points into it (the JSON decoder copies strings and raw
	// messages), so a buffer is reused as soon as its review is answered.
	bodies sync.Pool
}

func (h *handler) serve(w http.ResponseWriter, req *http.Request, decide decideFunc, fast bool) {
	stage := req.PathValue("stage")
	resp := h.review(w, req, stage, decide, fast)
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metaV1Review(),
		Response: resp,
	})
	if err != nil {
		// Cannot happen with these types; still answer something decodable.
		h.opts.log.Error("admission: encode response", "err", err)
		out, _ = json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metaV1Review(),
			Response: Errored(resp.UID, fmt.Errorf("stagegate could not encode its answer: %w", err)),
		})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// review decodes the request and asks the Reviewer, turning every failure,
// panics included, into a denial that echoes the UID when it could be read.
func (h *handler) review(w http.ResponseWriter, req *http.Request, stage string, decide decideFunc, fast bool) (resp *admissionv1.AdmissionResponse) {
	var uid types.UID
	defer func() {
		if p := recover(); p != nil {
			h.opts.log.Error("admission: panic during review", "stage", stage, "uid", uid, "panic", p, "stack", string(debug.Stack()))
			resp = Errored(uid, fmt.Errorf("stagegate could not decide for stage %q: internal error", stage))
		}
	}()
	deny := func(code int32, err error) *admissionv1.AdmissionResponse {
		h.opts.log.Warn("admission: bad review request", "stage", stage, "uid", uid, "remote", req.RemoteAddr, "err", err)
		return Denied(uid, code, "stagegate could not decide: "+err.Error())
	}
	if mt, _, err := mime.ParseMediaType(req.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return deny(http.StatusUnsupportedMediaType, fmt.Errorf("%w: content type %q, want application/json", ErrBadReview, req.Header.Get("Content-Type")))
	}
	buf, _ := h.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer h.putBody(buf)
	buf.Reset()
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, h.opts.maxBody))
	body := buf.Bytes()
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return deny(http.StatusRequestEntityTooLarge, fmt.Errorf("%w: body larger than %d bytes", ErrBadReview, h.opts.maxBody))
		}
		return deny(http.StatusBadRequest, fmt.Errorf("%w: read body: %v", ErrBadReview, err))
	}
	// The common case in one pass: the review with its object decoded
	// straight into the shape admission reads, for the built-in kinds.
	// Anything else is left to the strict path below, which keeps the raw
	// object and names any problem.
	if fast {
		var fr fastReview
		if strict, err := kjson.UnmarshalStrict(body, &fr, kjson.DisallowDuplicateFields); err == nil && len(strict) == 0 &&
			fr.Request != nil && checkReview(fr.TypeMeta, &fr.Request.AdmissionRequest) == nil && fr.Request.Object != nil {
			if _, known := lookupKind(fr.Request.Kind.Group, fr.Request.Kind.Kind); known {
				uid = fr.Request.UID
				resp = decide(req.Context(), stage, &fr.Request.AdmissionRequest, fr.Request.Object)
				resp.UID = uid
				return resp
			}
		}
	}
	// Decode as the API server encodes: case-sensitive, and no field twice,
	// so that no two readers of the same body can disagree about it.
	var review admissionv1.AdmissionReview
	strict, err := kjson.UnmarshalStrict(body, &review, kjson.DisallowDuplicateFields)
	if err != nil {
		return deny(http.StatusBadRequest, fmt.Errorf("%w: %v", ErrBadReview, err))
	}
	if review.Request != nil {
		uid = review.Request.UID
	}
	if len(strict) > 0 {
		return deny(http.StatusBadRequest, fmt.Errorf("%w: %v", ErrBadReview, errors.Join(strict...)))
	}
	if err := checkReview(review.TypeMeta, review.Request); err != nil {
		return deny(http.StatusBadRequest, err)
	}
	resp = decide(req.Context(), stage, review.Request, nil)
	resp.UID = uid
	return resp
}

// maxPooledBody keeps the rare huge body's buffer out of the pool, so that
// one 3 MiB review does not stay pinned.
const maxPooledBody = 64 << 10

func (h *handler) putBody(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBody {
		h.bodies.Put(b)
	}
}

// fastReview is an AdmissionReview whose request's object is decoded as a
// workloadObject rather than kept as raw bytes to decode again: the field
// at the shallower depth wins over AdmissionRequest.Object.
type fastReview struct {
	metav1.TypeMeta `json:",inline"`
	Request         *fastRequest `json:"request"`
}

type fastRequest struct {
	admissionv1.AdmissionRequest
	Object *workloadObject `json:"object"`
}

// checkReview is what makes a decoded body an AdmissionReview v1 request
// from the API server.
func checkReview(tm metav1.TypeMeta, req *admissionv1.AdmissionRequest) error {
	if tm.APIVersion != reviewAPIVersion || tm.Kind != reviewKind {
		return fmt.Errorf("%w: got %s %s, want %s %s (set admissionReviewVersions to [v1])",
			ErrBadReview, tm.APIVersion, tm.Kind, reviewAPIVersion, reviewKind)
	}
	if req == nil {
		return fmt.Errorf("%w: no request", ErrBadReview)
	}
	// The API server always sets a UID and drops a response that does not
	// echo it; a review without one is not from the API server.
	if req.UID == "" {
		return fmt.Errorf("%w: request has no uid", ErrBadReview)
	}
	return nil
}

func metaV1Review() metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: reviewAPIVersion, Kind: reviewKind}
}
