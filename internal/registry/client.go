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
	"maps"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
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
}

// Option configures a Client.
type Option func(*Client)

// WithHost sets the settings of one registry host[:port].
func WithHost(host string, h Host) Option { return func(c *Client) { c.hosts[host] = h } }

// WithKeychain replaces the default Docker config keychain.
func WithKeychain(k authn.Keychain) Option { return func(c *Client) { c.keychain = k } }

// WithTimeout bounds each registry operation.
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// New returns a Client that authenticates with the Docker config keychain.
func New(opts ...Option) *Client {
	c := &Client{hosts: map[string]Host{}, keychain: authn.DefaultKeychain, timeout: 30 * time.Second}
	for _, o := range opts {
		o(c)
	}
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

var sha256Digest = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// ValidDigest reports whether d is a lowercase sha256 digest, the only kind
// stagegate records.
func ValidDigest(d string) bool { return sha256Digest.MatchString(d) }

// ParseReference parses an image reference. A reference that carries both a
// tag and a digest is accepted, and the digest is what counts, as for the
// kubelet. Digests must be sha256.
func (c *Client) ParseReference(ref string) (name.Reference, error) {
	if strings.TrimSpace(ref) != ref || ref == "" {
		return nil, fmt.Errorf("%w: %q", ErrInvalidReference, ref)
	}
	opts := []name.Option{name.StrictValidation}
	if at := strings.LastIndexByte(ref, '@'); at >= 0 {
		if d := ref[at+1:]; !ValidDigest(d) {
			return nil, fmt.Errorf("%w: %q: digest must be sha256 and 64 lowercase hex characters", ErrInvalidReference, ref)
		}
		// go-containerregistry rejects "repo:tag@digest"; drop the tag, the
		// digest is what identifies the image.
		repo := ref[:at]
		if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
			repo = repo[:i]
		}
		ref = repo + "@" + ref[at+1:]
		opts = []name.Option{name.WeakValidation}
	}
	if h, ok := c.hosts[hostOf(ref)]; ok && h.Insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrInvalidReference, ref, err)
	}
	if strings.Contains(r.Context().RepositoryStr(), "..") {
		return nil, fmt.Errorf("%w: %q: repository must not contain \"..\"", ErrInvalidReference, ref)
	}
	return r, nil
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
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	desc, err := remote.Get(r, c.remoteOptions(ctx, r)...)
	if err != nil {
		return Resolved{}, c.classify(r, err)
	}
	out := Resolved{Reference: ref, Repository: r.Context().Name(), Digest: desc.Digest.String()}
	if t, ok := r.(name.Tag); ok {
		out.Tag = t.TagStr()
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return Resolved{}, c.classify(r, err)
		}
		if err := c.resolveIndex(r, idx, &out); err != nil {
			return Resolved{}, err
		}
	} else if desc.MediaType.IsImage() {
		img, err := desc.Image()
		if err != nil {
			return Resolved{}, c.classify(r, err)
		}
		if out.Labels, err = labelsOf(img); err != nil {
			return Resolved{}, c.classify(r, err)
		}
	}
	return out, nil
}

// resolveIndex fills in the platforms of an index and the labels of each
// platform image, one manifest and one config read per image.
func (c *Client) resolveIndex(r name.Reference, idx v1.ImageIndex, out *Resolved) error {
	im, err := idx.IndexManifest()
	if err != nil {
		return c.classify(r, err)
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
			return c.classify(r, err)
		}
		labels, err := labelsOf(img)
		if err != nil {
			return c.classify(r, err)
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

func labelsOf(img v1.Image) (map[string]string, error) {
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
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	desc, err := remote.Head(r, c.remoteOptions(ctx, r)...)
	if err != nil {
		return "", c.classify(r, err)
	}
	return desc.Digest.String(), nil
}

// RemoteOptions are the go-containerregistry options for talking to the
// registry of ref: credentials, transport and context.
func (c *Client) RemoteOptions(ctx context.Context, ref name.Reference) []remote.Option {
	return c.remoteOptions(ctx, ref)
}

func (c *Client) remoteOptions(ctx context.Context, r name.Reference) []remote.Option {
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(c.keychain)}
	if h, ok := c.hosts[r.Context().RegistryStr()]; ok && (h.RootCAs != nil || h.Insecure) {
		t := remote.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: h.RootCAs, InsecureSkipVerify: h.Insecure} //nolint:gosec // explicit per-registry opt-in
		opts = append(opts, remote.WithTransport(t))
	}
	return opts
}

func (c *Client) classify(r name.Reference, err error) error {
	reg := r.Context().RegistryStr()
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound:
			return fmt.Errorf("%w: %s: %v", ErrNotFound, r, err)
		case http.StatusUnauthorized, http.StatusForbidden:
			return fmt.Errorf("%w: %s: %v", ErrUnauthorized, reg, err)
		}
		for _, d := range te.Errors {
			if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
				return fmt.Errorf("%w: %s", ErrNotFound, r)
			}
		}
		return fmt.Errorf("%w: registry %s answered %d: %v", ErrUnreachable, reg, te.StatusCode, err)
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: registry %s: %v", ErrUnreachable, reg, err)
	}
	return fmt.Errorf("%w: registry %s: %v", ErrUnreachable, reg, err)
}
