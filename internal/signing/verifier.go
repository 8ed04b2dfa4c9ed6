package signing

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
)

// Verifier checks DSSE envelopes made by a Signer (or by `cosign attest`)
// against one public key. It is safe for concurrent use.
type Verifier struct {
	v signature.Verifier
	// env checks DSSE signatures with v as sigstore's dsse.WrapVerifier
	// does (any key ID), but on an envelope already parsed: ledger verify
	// checks every entry, and parsing each envelope twice was a tenth of
	// its time.
	env *ssldsse.EnvelopeVerifier
}

// LoadVerifier loads a PEM public key file such as cosign.pub.
func LoadVerifier(pubPath string) (*Verifier, error) {
	b, err := os.ReadFile(pubPath)
	if err != nil {
		return nil, fmt.Errorf("signing: %w", err)
	}
	v, err := NewVerifier(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, pubPath)
	}
	return v, nil
}

// NewVerifier returns a Verifier for a PEM public key.
func NewVerifier(pubPEM []byte) (*Verifier, error) {
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pubPEM)
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrInvalidKey, err)
	}
	return newVerifier(pub)
}

func newVerifier(pub crypto.PublicKey) (*Verifier, error) {
	// The same load options as cosign.LoadPrivateKey, so an imported Ed25519
	// key verifies with the variant (Ed25519ph) it signs with.
	v, err := signature.LoadDefaultVerifier(pub, *cosign.GetDefaultLoadOptions(nil)...)
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrInvalidKey, err)
	}
	env, err := ssldsse.NewEnvelopeVerifier(&dsse.VerifierAdapter{SignatureVerifier: v, Pub: pub})
	if err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrInvalidKey, err)
	}
	return &Verifier{v: v, env: env}, nil
}

// Verify checks the envelope's payload type and signature and the shape of
// the in-toto statement it carries, and returns the statement.
func (v *Verifier) Verify(envelope []byte) (Statement, error) {
	payload, err := v.verifiedPayload(envelope)
	if err != nil {
		return Statement{}, err
	}
	var st Statement
	if err := json.Unmarshal(payload, &st); err != nil {
		return Statement{}, fmt.Errorf("signing: %w: %w", ErrInvalidStatement, err)
	}
	if err := st.validate(); err != nil {
		return Statement{}, err
	}
	return st, nil
}

// verifiedPayload checks the envelope's payload type and signature and
// returns its decoded payload, not yet read as a statement.
func (v *Verifier) verifiedPayload(envelope []byte) ([]byte, error) {
	var env ssldsse.Envelope
	if err := json.Unmarshal(envelope, &env); err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrInvalidEnvelope, err)
	}
	// The sigstore DSSE verifier does not look at the payload type, but
	// cosign verify-attestation insists on it, so we do too.
	if env.PayloadType != PayloadType {
		return nil, fmt.Errorf("signing: %w: payloadType %q, want %q", ErrInvalidEnvelope, env.PayloadType, PayloadType)
	}
	if len(env.Signatures) == 0 {
		return nil, fmt.Errorf("signing: %w: no signatures", ErrInvalidEnvelope)
	}
	if _, err := v.env.Verify(context.Background(), &env); err != nil {
		return nil, fmt.Errorf("signing: %w: %w", ErrBadSignature, err)
	}
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	if err != nil {
		return nil, fmt.Errorf("signing: %w: payload: %w", ErrInvalidEnvelope, err)
	}
	return payload, nil
}
