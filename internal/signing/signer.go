package signing

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"github.com/sigstore/sigstore/pkg/signature/dsse"
)

// Signer signs in-toto statements as DSSE envelopes with a cosign key. It is
// safe for concurrent use.
type Signer struct {
	sv   signature.SignerVerifier
	dsse signature.Signer
}

// LoadSigner loads a cosign private key file (cosign's encrypted PEM format)
// decrypted with password. It refuses a file accessible by group or others
// (ErrKeyPermissions) and reports a wrong password as ErrBadPassword.
func LoadSigner(path string, password []byte) (*Signer, error) {
	b, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	if password == nil {
		password = []byte{}
	}
	sv, err := cosign.LoadPrivateKey(b, password, nil)
	if err != nil {
		// go-securesystemslib reports a failed secretbox open with an
		// unexported error; it is what a wrong password (or a corrupted
		// ciphertext, which authenticated encryption cannot tell apart) gives.
		if strings.Contains(err.Error(), "decryption failed") {
			return nil, fmt.Errorf("signing: %w: %s", ErrBadPassword, path)
		}
		return nil, fmt.Errorf("signing: %w: %s: %w", ErrInvalidKey, path, err)
	}
	return newSigner(sv), nil
}

func newSigner(sv signature.SignerVerifier) *Signer {
	return &Signer{sv: sv, dsse: dsse.WrapSigner(sv, PayloadType)}
}

// Sign validates st and returns its compact DSSE envelope JSON, signed exactly
// as `cosign attest --key` signs (payload type PayloadType, PAE over the
// statement JSON).
func (s *Signer) Sign(st Statement) ([]byte, error) {
	if err := st.validate(); err != nil {
		return nil, err
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("signing: marshal statement: %w", err)
	}
	env, err := s.dsse.SignMessage(bytes.NewReader(payload))
	if err != nil {
		return nil, fmt.Errorf("signing: sign: %w", err)
	}
	return env, nil
}

// PublicKeyPEM returns the PEM public key, the same bytes as cosign.pub.
func (s *Signer) PublicKeyPEM() ([]byte, error) {
	pub, err := s.sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing: public key: %w", err)
	}
	b, err := cryptoutils.MarshalPublicKeyToPEM(pub)
	if err != nil {
		return nil, fmt.Errorf("signing: public key: %w", err)
	}
	return b, nil
}

// Verifier returns a Verifier for the signer's own public key.
func (s *Signer) Verifier() (*Verifier, error) {
	pub, err := s.sv.PublicKey()
	if err != nil {
		return nil, fmt.Errorf("signing: public key: %w", err)
	}
	return newVerifier(pub)
}
