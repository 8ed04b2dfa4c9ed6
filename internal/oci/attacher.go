// Package oci keeps promotion state in OCI registries, next to the image:
// it attaches promotion and revocation attestations the way `cosign attest`
// stores them, moves stage tags, copies images with their signatures and
// attestations to a stage's repository, verifies evidence attestations made
// by pipelines, and reads back attestations made by another stagegate.
//
// Everything here is registry I/O; it runs at promotion time or on import,
// never on the admission path.
package oci

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v2/pkg/oci"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"

	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing"
)

// RemoteOptionsFunc returns the go-containerregistry options (credentials,
// transport, context) for talking to the registry of ref.
// registry.Client.RemoteOptions has this signature.
type RemoteOptionsFunc func(ctx context.Context, ref name.Reference) []remote.Option

// Attacher reads and writes promotion state in registries. It is safe for
// concurrent use.
type Attacher struct {
	remoteOptions RemoteOptionsFunc
	parse         ReferenceParser
	log           *slog.Logger
}

// ReferenceParser parses an image reference. registry.Client.ParseReference
// has this signature; it marks plain-HTTP registries as insecure.
type ReferenceParser func(ref string) (name.Reference, error)

// Option configures an Attacher.
type Option func(*Attacher)

// WithRemoteOptions makes the Attacher use f for every registry request, so
// that the registry client's credentials and per-host TLS settings apply.
func WithRemoteOptions(f RemoteOptionsFunc) Option {
	return func(a *Attacher) { a.remoteOptions = f }
}

// WithReferenceParser makes the Attacher parse "repository@digest" with p,
// so that per-registry settings such as plain HTTP apply to names too.
func WithReferenceParser(p ReferenceParser) Option {
	return func(a *Attacher) { a.parse = p }
}

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option {
	return func(a *Attacher) { a.log = l }
}

// NewAttacher returns an Attacher. Without WithRemoteOptions it uses the
// Docker config keychain and the default transport.
func NewAttacher(opts ...Option) *Attacher {
	a := &Attacher{
		remoteOptions: func(ctx context.Context, _ name.Reference) []remote.Option {
			return []remote.Option{remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)}
		},
		parse: func(ref string) (name.Reference, error) { return name.ParseReference(ref) },
		log:   slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// ropts returns the remote options for ref; the context is appended last so
// that it wins over one the RemoteOptionsFunc might have captured.
func (a *Attacher) ropts(ctx context.Context, ref name.Reference) []remote.Option {
	return append(a.remoteOptions(ctx, ref), remote.WithContext(ctx))
}

// coopts wraps ropts for cosign's pkg/oci/remote. The target repository is
// pinned so that the COSIGN_REPOSITORY convention of the CLI never applies
// implicitly.
func (a *Attacher) coopts(ctx context.Context, ref name.Reference) []ociremote.Option {
	return []ociremote.Option{
		ociremote.WithRemoteOptions(a.ropts(ctx, ref)...),
		ociremote.WithTargetRepository(ref.Context()),
	}
}

// Attach attaches a DSSE envelope (an in-toto statement about digest, as
// signing.Signer.Sign makes) to repository@digest the way
// `cosign attest --key` does: a layer of media type
// application/vnd.dsse.envelope.v1+json with a predicateType annotation,
// appended to the image's sha256-<hex>.att tag. Attaching an envelope that
// is already there changes nothing. Like cosign's, the update of the tag is a
// read-modify-write: concurrent Attach calls for one digest may lose one, so
// callers serialize them per digest.
func (a *Attacher) Attach(ctx context.Context, repository, digest string, envelope []byte) error {
	ref, err := a.parseDigest(repository, digest)
	if err != nil {
		return err
	}
	st, err := decodeStatement(envelope)
	if err != nil {
		return fmt.Errorf("oci: attach to %s: %w", ref, err)
	}
	if !st.about(ref.DigestStr()) {
		return fmt.Errorf("oci: attach to %s: %w: statement subject is not %s", ref, ErrInvalidEnvelope, ref.DigestStr())
	}
	// cosign attaches to whatever digest it is given; we check that the
	// image is there so that a typo does not leave an orphan .att tag.
	if _, err := remote.Head(ref, a.ropts(ctx, ref)...); err != nil {
		return classify("attach to", ref, err)
	}
	att, err := static.NewAttestation(envelope,
		static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": st.PredicateType}))
	if err != nil {
		return fmt.Errorf("oci: attach to %s: %w", ref, err)
	}
	opts := a.coopts(ctx, ref)
	se, err := mutate.AttachAttestationToEntity(ociremote.SignedUnknown(ref, opts...), att,
		mutate.WithDupeDetector(sameLayer{}))
	if err != nil {
		return classify("attach to", ref, err)
	}
	if err := ociremote.WriteAttestations(ref.Repository, se, opts...); err != nil {
		return classify("attach to", ref, err)
	}
	a.log.DebugContext(ctx, "attached attestation", "image", ref.String(), "predicateType", st.PredicateType)
	return nil
}

// MoveTag points repository:tag at repository@digest, for consumers that
// follow stage tags.
func (a *Attacher) MoveTag(ctx context.Context, repository, digest, tag string) error {
	ref, err := a.parseDigest(repository, digest)
	if err != nil {
		return err
	}
	if _, err := name.NewTag(ref.Context().Name()+":"+tag, name.StrictValidation); err != nil {
		return fmt.Errorf("oci: %w: tag %q: %v", registry.ErrInvalidReference, tag, err)
	}
	t := ref.Context().Tag(tag) // keeps the repository's registry settings
	desc, err := remote.Get(ref, a.ropts(ctx, ref)...)
	if err != nil {
		return classify("move tag to", ref, err)
	}
	if err := remote.Tag(t, desc, a.ropts(ctx, t)...); err != nil {
		return classify("move tag", t, err)
	}
	a.log.InfoContext(ctx, "moved stage tag", "tag", t.String(), "digest", ref.DigestStr())
	return nil
}

// sameLayer is the mutate.DupeDetector for Attach. cosign's own
// (pkg/cosign/remote.NewDupeDetector) compares base64 signature annotations,
// which DSSE attestations do not have, so it never finds one; equal layer
// digests and annotations mean the same envelope.
type sameLayer struct{}

func (sameLayer) Find(existing oci.Signatures, s oci.Signature) (oci.Signature, error) {
	want, err := s.Digest()
	if err != nil {
		return nil, err
	}
	wantAnn, err := s.Annotations()
	if err != nil {
		return nil, err
	}
	sigs, err := existing.Get()
	if err != nil {
		return nil, err
	}
	for _, e := range sigs {
		d, err := e.Digest()
		if err != nil || d != want {
			continue
		}
		ann, err := e.Annotations()
		if err != nil || !sameAnnotations(ann, wantAnn) {
			continue
		}
		return e, nil
	}
	return nil, nil
}

func sameAnnotations(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// statement is the part of an in-toto statement this package reads without
// verifying it.
type statement struct {
	signing.Statement
}

// about reports whether digest is one of the statement's subjects.
func (st statement) about(digest string) bool {
	h, err := v1.NewHash(digest)
	if err != nil {
		return false
	}
	for _, s := range st.Subject {
		if s.Digest[h.Algorithm] == h.Hex {
			return true
		}
	}
	return false
}

// decodeStatement reads the statement in a DSSE envelope, without checking
// the signature.
func decodeStatement(envelope []byte) (statement, error) {
	var env ssldsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return statement{}, fmt.Errorf("%w: %w", ErrInvalidEnvelope, err)
	}
	if env.PayloadType != types.IntotoPayloadType {
		return statement{}, fmt.Errorf("%w: payloadType %q, want %q", ErrInvalidEnvelope, env.PayloadType, types.IntotoPayloadType)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return statement{}, fmt.Errorf("%w: payload: %w", ErrInvalidEnvelope, err)
	}
	var st statement
	dec := json.NewDecoder(bytes.NewReader(payload))
	if err := dec.Decode(&st.Statement); err != nil {
		return statement{}, fmt.Errorf("%w: statement: %w", ErrInvalidEnvelope, err)
	}
	if st.PredicateType == "" || len(st.Subject) == 0 {
		return statement{}, fmt.Errorf("%w: statement has no predicateType or subject", ErrInvalidEnvelope)
	}
	return st, nil
}

// parseDigest parses repository and a sha256 digest into a digest
// reference with the Attacher's ReferenceParser.
func (a *Attacher) parseDigest(repository, digest string) (name.Digest, error) {
	if !registry.ValidDigest(digest) {
		return name.Digest{}, fmt.Errorf("oci: %w: digest %q: want sha256:<64 lowercase hex>", registry.ErrInvalidReference, digest)
	}
	ref, err := a.parse(repository + "@" + digest)
	if err != nil {
		return name.Digest{}, fmt.Errorf("oci: %w: repository %q: %w", registry.ErrInvalidReference, repository, err)
	}
	d, ok := ref.(name.Digest)
	if !ok {
		return name.Digest{}, fmt.Errorf("oci: %w: repository %q", registry.ErrInvalidReference, repository)
	}
	return d, nil
}

// classify wraps a go-containerregistry or cosign error with the sentinel
// that says whose problem it is.
func classify(op string, ref name.Reference, err error) error {
	var te *transport.Error
	if errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden) {
		return fmt.Errorf("oci: %s %s: %w: registry %s: %w", op, ref, registry.ErrUnauthorized, ref.Context().RegistryStr(), err)
	}
	if isNotFound(err) {
		return fmt.Errorf("oci: %s %s: %w: %w", op, ref, registry.ErrNotFound, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return fmt.Errorf("oci: %s %s: %w: registry %s unreachable: %w", op, ref, registry.ErrUnreachable, ref.Context().RegistryStr(), err)
	}
	return fmt.Errorf("oci: %s %s: %w: %w", op, ref, registry.ErrUnreachable, err)
}

// isNotFound reports whether err is the registry saying "no such manifest".
func isNotFound(err error) bool {
	var te *transport.Error
	if !errors.As(err, &te) {
		return false
	}
	if te.StatusCode == http.StatusNotFound {
		return true
	}
	for _, d := range te.Errors {
		if d.Code == transport.ManifestUnknownErrorCode || d.Code == transport.NameUnknownErrorCode {
			return true
		}
	}
	return false
}
