// Package registry talks to OCI registries through go-containerregistry:
// resolving tags to digests, reading image labels, and the embedded dev
// registry.
package registry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Host holds the settings of one registry.
type Host struct {
	// Insecure allows plain HTTP (and an unverified certificate).
	Insecure bool
	// RootCAs replaces the system roots for this registry.
	RootCAs *x509.CertPool
}

// Client resolves references against registries.
type Client struct {
	hosts    map[string]Host
	keychain authn.Keychain
	timeout  time.Duration
	// allow is nil unless WithAllowList is given.
	allow map[string]bool
	guard *guard
}

// Option configures a Client.
type Option func(*Client)

// WithHost sets the settings of one registry host[:port].
func WithHost(host string, h Host) Option { return func(c *Client) { c.hosts[host] = h } }

// WithKeychain replaces the default Docker config keychain.
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// WithTimeout bounds each wait for a registry: connecting and sending up to
// the answer's headers, and each read of an answer, on every path (the
// Attacher's too, through RemoteOptions). It also bounds Resolve and Digest
// as a whole. A registry that does not answer in time gives a
// *TimeoutError.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithAllowList makes hosts (host[:port], as in WithHost) the only
// registries the client contacts: a reference to another host, a redirect
// to one and a token realm on one are refused before any network I/O, with
// a *HostNotAllowedError. The token service of a registry and the storage
// it redirects blobs to must be listed too. Without it every host is
// allowed.
func WithAllowList(hosts ...string) Option {
	return func(c *Client) {
		if c.allow == nil {
			c.allow = map[string]bool{}
		}
		for _, h := range hosts {
			c.allow[normalHost(h)] = true
		}
	}
}

// DefaultTimeout is the client's WithTimeout unless told otherwise.
const DefaultTimeout = 10 * time.Second

// New returns a Client that authenticates with the Docker config keychain.
func New(opts ...Option) *Client {
	c := &Client{hosts: map[string]Host{}, keychain: authn.DefaultKeychain, timeout: DefaultTimeout}
	for _, o := range opts {
		o(c)
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	c.guard = newGuard(c.hosts, c.allow, c.timeout)
	return c
}

// LoadCAFile reads a PEM bundle for Host.RootCAs.
func LoadCAFile(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("registry: ca file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("registry: ca file %s: no PEM certificates", path)
	}
	return pool, nil
}

// ValidDigest reports whether d is "sha256:" and 64 lowercase hex digits,
// the only kind of digest stagegate records, signs and admits. It is the
// one check of that: admission calls it on every image of every review, so
// it is a loop rather than a regular expression.
func ValidDigest(d string) bool {
	hex, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(hex) != 64 {
		return false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ParseReference parses an image reference as the API takes them: a tag
// reference names its registry and tag; otherwise as ParseImage. Hosts
// configured Insecure are marked so.
func (c *Client) ParseReference(ref string) (name.Reference, error) {
	var opts []name.Option
	if h, ok := c.hosts[hostOf(ref)]; ok && h.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, _, err := parse(ref, true, opts...)
	return r, err
}

func hostOf(ref string) string {
	if i := strings.IndexByte(ref, '/'); i > 0 {
		if h := ref[:i]; strings.ContainsAny(h, ".:") || h == "localhost" {
			return h
		}
	}
	return name.DefaultRegistry
}

// Resolved is an image as the registry describes it.
type Resolved struct {
	Reference  string
	Repository string // registry/repository, e.g. "127.0.0.1:5000/sample/app"
	Tag        string
	Digest     string
	// Platforms are the platform manifest digests of an index.
	Platforms []string
	// Labels are the image config labels. An index has no config: its
	// Labels are those that every platform image of it carries with the
	// same value, so that what a policy reads about the index holds
	// whichever platform a node pulls. For the usual index, one build for
	// several platforms, that is every label, as when the first image's
	// labels stood for the index.
	Labels map[string]string
	// PlatformLabels are the config labels of each platform image of an
	// index, by digest; a platform without labels has no key.
	PlatformLabels map[string]map[string]string
}

// Resolve asks the registry for the digest of ref (a tag or a digest), the
// platform digests if it is an index, and the image config labels.
func (c *Client) Resolve(ctx context.Context, ref string) (Resolved, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return Resolved{}, err
	}
	if err := c.check(r); err != nil {
		return Resolved{}, err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	desc, err := remote.Get(r, c.remoteOptions(ctx, r)...)
	if err != nil {
		return Resolved{}, c.classify(ctx, r, err)
	}
	out := Resolved{Reference: ref, Repository: r.Context().Name(), Digest: desc.Digest.String()}
	if t, ok := r.(name.Tag); ok {
		out.Tag = t.TagStr()
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Resolved{}, c.classify(ctx, r, err)
		}
		if err := c.resolveIndex(ctx, r, idx, &out); err != nil {
			return Resolved{}, err
		}
	} else if desc.MediaType.IsImage() {
		img, err := desc.Image()
		if err != nil {
			return Resolved{}, c.classify(ctx, r, err)
		}
		if out.Labels, err = labelsOf(img); err != nil {
			return Resolved{}, c.classify(ctx, r, err)
		}
	}
	return out, nil
}

// resolveIndex fills in the platforms of an index and the labels of each
// platform image, one manifest and one config read per image.
func (c *Client) resolveIndex(ctx context.Context, r name.Reference, idx v1.ImageIndex, out *Resolved) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return c.classify(ctx, r, err)
	}
	var shared map[string]string
	runnable := 0
	for _, m := range im.Manifests {
		out.Platforms = append(out.Platforms, m.Digest.String())
		// A nested index has no config, and its images are not read. An
		// attestation manifest (buildx's provenance and SBOM) is listed as
		// an image but never runs: its config says nothing about the index.
		if !m.MediaType.IsImage() || isAttestation(m) {
			continue
		}
		img, err := idx.Image(m.Digest)
		if err != nil {
			return c.classify(ctx, r, err)
		}
		labels, err := labelsOf(img)
		if err != nil {
			return c.classify(ctx, r, err)
		}
		if len(labels) > 0 {
			if out.PlatformLabels == nil {
				out.PlatformLabels = map[string]map[string]string{}
			}
			out.PlatformLabels[m.Digest.String()] = labels
		}
		if runnable++; runnable == 1 {
			shared = maps.Clone(labels)
			continue
		}
		maps.DeleteFunc(shared, func(k, v string) bool { w, ok := labels[k]; return !ok || w != v })
	}
	if len(shared) > 0 {
		out.Labels = shared
	}
	return nil
}

// isAttestation reports whether an index entry is an attestation manifest
// as docker buildx writes them.
func isAttestation(m v1.Descriptor) bool {
	if m.Annotations["vnd.docker.reference.type"] == "attestation-manifest" {
		return true
	}
	return m.Platform != nil && m.Platform.OS == "unknown" && m.Platform.Architecture == "unknown"
}

// labelsOf reads an image's config labels. An OCI artifact (a Helm chart,
// a Flux or kustomize rendering pushed by digest, a signature) has a config
// of its own media type, or the empty descriptor, that need not even be
// JSON: it has no labels, and it is promoted like any image.
func labelsOf(img v1.Image) (map[string]string, error) {
	m, err := img.Manifest()
	if err != nil {
		return nil, err
	}
	if mt := m.Config.MediaType; mt != types.OCIConfigJSON && mt != types.DockerConfigJSON {
		return nil, nil
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	if len(cf.Config.Labels) == 0 {
		return nil, nil
	}
	return cf.Config.Labels, nil
}

// Digest returns the digest a reference points at now, with one HEAD
// request. It is what admission uses for tag references.
func (c *Client) Digest(ctx context.Context, ref string) (string, error) {
	r, err := c.ParseReference(ref)
	if err != nil {
		return "", err
	}
	if d, ok := r.(name.Digest); ok {
		return d.DigestStr(), nil
	}
	if err := c.check(r); err != nil {
		return "", err
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	desc, err := remote.Head(r, c.remoteOptions(ctx, r)...)
	if err != nil {
		return "", c.classify(ctx, r, err)
	}
	return desc.Digest.String(), nil
}

// RemoteOptions are the go-containerregistry options for talking to the
// registry of ref: credentials, context, and the transport that enforces the
// allow-list, strips the text of error answers and bounds each wait (see
// guard). Every registry request of stagegate goes through them.
func (c *Client) RemoteOptions(ctx context.Context, ref name.Reference) []remote.Option {
	return c.remoteOptions(ctx, ref)
}

func (c *Client) remoteOptions(ctx context.Context, _ name.Reference) []remote.Option {
	return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(c.keychain), remote.WithTransport(c.guard)}
}

// check refuses a reference to a host outside the allow-list before
// anything else happens; the guard would refuse it too, deeper down.
func (c *Client) check(r name.Reference) error {
	if reg := r.Context().RegistryStr(); !c.guard.allowed(reg) {
		return &HostNotAllowedError{Host: reg}
	}
	return nil
}

// withTimeout bounds one operation by the client's timeout, and remembers
// the bound that applies (the caller's may be shorter) for the message of a
// *TimeoutError.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	b := c.timeout
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < b {
		b = max(time.Until(dl).Round(100*time.Millisecond), 100*time.Millisecond)
	}
	return context.WithTimeout(context.WithValue(ctx, budgetKey{}, b), c.timeout)
}

type budgetKey struct{}

// classify turns what go-containerregistry returned into this package's
// errors. Nothing the registry wrote is kept: only the status, the known
// error codes and stagegate's own words.
func (c *Client) classify(ctx context.Context, r name.Reference, err error) error {
	reg := r.Context().RegistryStr()
	var hna *HostNotAllowedError
	if errors.As(err, &hna) {
		return hna
	}
	var te *TimeoutError
	if errors.As(err, &te) {
		return te
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return &TimeoutError{Host: reg, After: budget(ctx, c.timeout)}
	}
	var tre *transport.Error
	if errors.As(err, &tre) {
		e := &Error{Kind: ErrUnreachable, Registry: reg, Status: tre.StatusCode}
		for _, d := range tre.Errors {
			// guard left only known codes; this is the second fence.
			if knownCodes[d.Code] {
				e.Codes = append(e.Codes, string(d.Code))
			}
		}
		switch {
		case tre.StatusCode == http.StatusNotFound || slices.Contains(e.Codes, string(transport.ManifestUnknownErrorCode)) ||
			slices.Contains(e.Codes, string(transport.NameUnknownErrorCode)):
			e.Kind, e.Ref = ErrNotFound, r.String()
		case tre.StatusCode == http.StatusUnauthorized || tre.StatusCode == http.StatusForbidden:
			e.Kind = ErrUnauthorized
		}
		return e
	}
	return &Error{Kind: ErrUnreachable, Registry: reg, Reason: reason(err)}
}

// budget is the bound withTimeout put on ctx.
func budget(ctx context.Context, timeout time.Duration) time.Duration {
	if b, ok := ctx.Value(budgetKey{}).(time.Duration); ok {
		return b
	}
	return timeout
}

// reason describes err in stagegate's words. Errors of the network stack
// (dial, DNS, TLS, certificates) are kept, because they are made here from
// addresses and fixed messages; anything else may quote the answer (a
// parse error, net/http's "malformed HTTP response"), and is summed up.
func reason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	var cert *tls.CertificateVerificationError
	if errors.As(err, &cert) {
		return cert.Error()
	}
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) {
		return "tls: " + rec.Msg
	}
	switch {
	case errors.Is(err, context.Canceled):
		return "the request was canceled"
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the connection closed before the answer was complete"
	}
	return "its answer could not be read as an image"
}
