package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/secretfile"
)

// TokenFile is the on-disk list of bearer tokens. It stores only the
// sha256 of each token, so that reading the file does not let anyone in.
type TokenFile struct {
	Tokens []Token `json:"tokens"`
}

// Token maps a token hash to an identity.
type Token struct {
	// SHA256 is the hex sha256 of the token.
	SHA256  string   `json:"sha256"`
	Subject string   `json:"subject"`
	Groups  []string `json:"groups,omitempty"`
}

// HashToken returns what TokenFile stores for a token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// LoadTokens reads a token file.
func LoadTokens(path string) (*TokenFile, error) {
	// Only hashes are stored, but who may read the list of subjects and
	// groups, and who may add a line to it, is still the owner's alone.
	b, err := secretfile.Read(path)
	if err != nil {
		return nil, fmt.Errorf("api: tokens: %w", err)
	}
	var tf TokenFile
	if err := yaml.UnmarshalStrict(b, &tf); err != nil {
		return nil, fmt.Errorf("api: tokens: %s: %w", path, err)
	}
	for i, t := range tf.Tokens {
		if len(t.SHA256) != 64 || strings.ToLower(t.SHA256) != t.SHA256 {
			return nil, fmt.Errorf("api: tokens: %s: entry %d: sha256 must be 64 lowercase hex characters", path, i)
		}
		if _, err := hex.DecodeString(t.SHA256); err != nil {
			return nil, fmt.Errorf("api: tokens: %s: entry %d: %w", path, i, err)
		}
		if t.Subject == "" {
			return nil, fmt.Errorf("api: tokens: %s: entry %d: subject is required", path, i)
		}
	}
	return &tf, nil
}

// Authenticator establishes who sent a request: a bearer token from the
// token file, or else a verified TLS client certificate (CN is the subject,
// O the groups, as Kubernetes does it).
type Authenticator struct {
	tokens []tokenHash
}

type tokenHash struct {
	sum [sha256.Size]byte
	id  policy.Identity
}

// NewAuthenticator builds an Authenticator from a token file (may be nil).
func NewAuthenticator(tf *TokenFile) *Authenticator {
	a := &Authenticator{}
	if tf == nil {
		return a
	}
	for _, t := range tf.Tokens {
		var th tokenHash
		b, _ := hex.DecodeString(t.SHA256)
		copy(th.sum[:], b)
		th.id = policy.Identity{Subject: t.Subject, Groups: t.Groups, Method: "token"}
		a.tokens = append(a.tokens, th)
	}
	return a
}

var errUnauthenticated = errors.New("authentication required: send 'Authorization: Bearer <token>' or a client certificate")

// Authenticate returns the identity of r.
func (a *Authenticator) Authenticate(r *http.Request) (policy.Identity, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return policy.Identity{}, errors.New("malformed Authorization header: want 'Bearer <token>'")
		}
		sum := sha256.Sum256([]byte(tok))
		// Compare with every entry, so that timing does not tell which
		// entry came close.
		var found *policy.Identity
		for i := range a.tokens {
			if subtle.ConstantTimeCompare(sum[:], a.tokens[i].sum[:]) == 1 {
				found = &a.tokens[i].id
			}
		}
		if found == nil {
			return policy.Identity{}, errors.New("invalid bearer token")
		}
		return *found, nil
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		if cert.Subject.CommonName != "" {
			return policy.Identity{Subject: cert.Subject.CommonName, Groups: cert.Subject.Organization, Method: "mtls"}, nil
		}
	}
	return policy.Identity{}, errUnauthenticated
}
