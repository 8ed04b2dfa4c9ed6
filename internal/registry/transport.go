package registry

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// guard is the RoundTripper under every registry request stagegate makes,
// go-containerregistry's and cosign's alike (the ping, the token exchange,
// each redirect hop, uploads). It is the one place that
//   - refuses a host the allow-list does not name, before dialing, so that
//     neither a reference nor a redirect nor a token realm can make
//     stagegate a proxy into the network it runs in;
//   - strips the text of error answers, because go-containerregistry puts
//     the body of an error response into its error message, and that
//     message reached API answers, denials and logs: a registry that
//     redirected to a metadata service had its token echoed to the
//     requester;
//   - bounds each wait for the registry, so that one that accepts the
//     connection and never answers fails with a *TimeoutError naming it.
type guard struct {
	// allow is nil when every host is allowed.
	allow map[string]bool
	// timeout bounds each wait: connecting and sending up to the answer's
	// headers, then each read of the answer. Progress resets it, so a long
	// copy that keeps moving is not cut.
	timeout time.Duration
	base    *http.Transport
	// byHost are the transports of hosts with their own TLS settings.
	byHost map[string]*http.Transport
}

func newGuard(hosts map[string]Host, allow map[string]bool, timeout time.Duration) *guard {
	// A proxy from the environment still applies: the check is on the
	// request's host, whatever carries it.
	base := remote.DefaultTransport.(*http.Transport).Clone()
	g := &guard{allow: allow, timeout: timeout, base: base, byHost: map[string]*http.Transport{}}
	for host, h := range hosts {
		if h.RootCAs == nil && !h.Insecure {
			continue
		}
		t := base.Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: h.RootCAs, InsecureSkipVerify: h.Insecure} //nolint:gosec // explicit per-registry opt-in
		g.byHost[normalHost(host)] = t
	}
	return g
}

// allowed reports whether host (host[:port]) may be contacted.
func (g *guard) allowed(host string) bool {
	return g.allow == nil || g.allow[normalHost(host)]
}

// normalHost lowercases host and drops a default port, so that
// "Registry.example:443" in the config matches the URL host
// "registry.example".
func normalHost(host string) string {
	host = strings.ToLower(host)
	for _, p := range []string{":443", ":80"} {
		host = strings.TrimSuffix(host, p)
	}
	return host
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if !g.allowed(host) {
		e := &HostNotAllowedError{Host: host}
		if req.Response != nil && req.Response.Request != nil {
			e.RedirectedFrom = req.Response.Request.URL.Host
		}
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, e
	}
	t := g.base
	if bt, ok := g.byHost[normalHost(host)]; ok {
		t = bt
	}
	ctx, cancel := context.WithCancelCause(req.Context())
	w := &watch{cancel: cancel, err: &TimeoutError{Host: host, After: g.timeout}, d: g.timeout}
	w.start()
	out := req.WithContext(ctx)
	if req.Body != nil && req.Body != http.NoBody {
		out.Body = &uploadBody{ReadCloser: req.Body, w: w}
	}
	resp, err := t.RoundTrip(out)
	if err != nil {
		w.stop()
		cancel(nil)
		var te *TimeoutError
		if errors.As(context.Cause(ctx), &te) {
			return nil, te
		}
		return nil, err
	}
	// The headers are here; from now on each read of the body is watched.
	w.headers()
	body := &answerBody{rc: resp.Body, w: w, ctx: ctx, cancel: cancel}
	resp.Body = body
	if resp.StatusCode >= http.StatusBadRequest {
		sanitize(resp)
	}
	return resp, nil
}

// watch cancels a request when it makes no progress for d. Progress is
// what stagegate waits for: the registry accepting an upload chunk, or an
// answer's bytes arriving; time spent elsewhere (a slow source feeding an
// upload, the caller busy between reads) does not count.
type watch struct {
	mu     sync.Mutex
	t      *time.Timer
	d      time.Duration
	cancel context.CancelCauseFunc
	err    error
	// answered is set once the headers are here: an upload read after
	// that (a registry may answer before it has read everything) must not
	// arm the watch while nobody reads the answer.
	answered bool
}

func (w *watch) start() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.arm()
}

func (w *watch) arm() {
	if w.t == nil {
		w.t = time.AfterFunc(w.d, func() { w.cancel(w.err) })
		return
	}
	w.t.Reset(w.d)
}

func (w *watch) stop() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.t != nil {
		w.t.Stop()
	}
}

// resumeUpload re-arms the watch after a read of the request body, unless
// the answer has begun.
func (w *watch) resumeUpload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.answered {
		w.arm()
	}
}

// headers stops the watch when the answer's headers arrive.
func (w *watch) headers() {
	w.mu.Lock()
	w.answered = true
	w.mu.Unlock()
	w.stop()
}

// uploadBody pauses the watch while the request body's source is read: a
// stalled source is its own registry's timeout, not this one's.
type uploadBody struct {
	io.ReadCloser
	w *watch
}

func (b *uploadBody) Read(p []byte) (int, error) {
	b.w.stop()
	defer b.w.resumeUpload()
	return b.ReadCloser.Read(p)
}

// answerBody watches each read of an answer and turns the watch's cut into
// a *TimeoutError.
type answerBody struct {
	rc     io.ReadCloser
	w      *watch
	ctx    context.Context
	cancel context.CancelCauseFunc
}

func (b *answerBody) Read(p []byte) (int, error) {
	b.w.start()
	n, err := b.rc.Read(p)
	b.w.stop()
	if err != nil && err != io.EOF {
		var te *TimeoutError
		if errors.As(context.Cause(b.ctx), &te) {
			return n, te
		}
	}
	return n, err
}

func (b *answerBody) Close() error {
	b.w.stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// maxErrorBody is what is read of an error answer to find its codes; the
// rest is dropped unread.
const maxErrorBody = 64 << 10

// knownCodes are the error codes of the distribution spec (and
// distribution's UNAVAILABLE). Only these survive sanitize: a code is a
// string the registry chose, and an unknown one could carry anything.
var knownCodes = map[transport.ErrorCode]bool{
	transport.BlobUnknownErrorCode: true, transport.BlobUploadInvalidErrorCode: true,
	transport.BlobUploadUnknownErrorCode: true, transport.DigestInvalidErrorCode: true,
	transport.ManifestBlobUnknownErrorCode: true, transport.ManifestInvalidErrorCode: true,
	transport.ManifestUnknownErrorCode: true, transport.ManifestUnverifiedErrorCode: true,
	transport.NameInvalidErrorCode: true, transport.NameUnknownErrorCode: true,
	transport.SizeInvalidErrorCode: true, transport.TagInvalidErrorCode: true,
	transport.UnauthorizedErrorCode: true, transport.DeniedErrorCode: true,
	transport.UnsupportedErrorCode: true, transport.TooManyRequestsErrorCode: true,
	transport.UnknownErrorCode: true, transport.UnavailableErrorCode: true,
}

// sanitize replaces the body of an error answer by one that keeps the
// registry's known error codes and nothing else: no message, no detail, no
// raw text. go-containerregistry (and cosign above it) still see the status
// and the codes they decide on (MANIFEST_UNKNOWN, UNAUTHORIZED), and their
// error messages can no longer carry what the registry, or whatever it
// redirected to, answered.
func sanitize(resp *http.Response) {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	resp.Body.Close()
	var in struct {
		Errors []struct {
			Code transport.ErrorCode `json:"code"`
		} `json:"errors"`
	}
	_ = json.Unmarshal(b, &in)
	type diag struct {
		Code transport.ErrorCode `json:"code"`
	}
	var out struct {
		Errors []diag `json:"errors"`
	}
	for _, d := range in.Errors {
		if knownCodes[d.Code] {
			out.Errors = append(out.Errors, diag{Code: d.Code})
		}
	}
	var clean []byte
	if len(out.Errors) > 0 {
		clean, _ = json.Marshal(out)
		resp.Header.Set("Content-Type", "application/json")
	} else {
		resp.Header.Del("Content-Type")
	}
	resp.Header.Set("Content-Length", strconv.Itoa(len(clean)))
	resp.ContentLength = int64(len(clean))
	resp.Body = io.NopCloser(bytes.NewReader(clean))
}
