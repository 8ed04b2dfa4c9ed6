package signing

import (
	"context"
	"crypto"
	"encoding/json"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/in-toto/in-toto-golang/in_toto"
	"github.com/sigstore/cosign/v2/pkg/cosign"
	"github.com/sigstore/cosign/v2/pkg/oci/mutate"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"
	"github.com/sigstore/cosign/v2/pkg/oci/static"
	"github.com/sigstore/cosign/v2/pkg/types"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
)

// attachToRegistry pushes a random image to an in-process registry and
// attaches env to it the way `cosign attest --key` does (DSSE layer media
// type, predicateType annotation, attestation tag). It returns the digest
// reference of the image.
func attachToRegistry(t *testing.T, k testKeys) (name.Digest, []byte) {
	t.Helper()
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	repo, err := name.NewRepository(strings.TrimPrefix(reg.URL, "http://") + "/team/app")
	if err != nil {
		t.Fatal(err)
	}
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(repo.Tag("v1"), img); err != nil {
		t.Fatal(err)
	}
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	digest := repo.Digest(h.String())

	st, err := NewStatement(repo.String(), h.String(), PromotionPredicateType, PromotionPredicate{
		Stage: "prod", Repository: repo.String(), Requester: Requester{Subject: "ci"},
		Time: time.Unix(1700000000, 0).UTC(), LedgerIndex: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	env, err := k.signer.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	att, err := static.NewAttestation(env,
		static.WithLayerMediaType(types.DssePayloadType),
		static.WithAnnotations(map[string]string{"predicateType": PromotionPredicateType}))
	if err != nil {
		t.Fatal(err)
	}
	se, err := ociremote.SignedEntity(digest)
	if err != nil {
		t.Fatal(err)
	}
	se, err = mutate.AttachAttestationToEntity(se, att)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociremote.WriteAttestations(digest.Repository, se); err != nil {
		t.Fatal(err)
	}
	return digest, env
}

// TestCosignVerifyAttestationPath runs the library code behind
// `cosign verify-attestation --key cosign.pub --type <uri> --insecure-ignore-tlog`
// against our envelope attached to an image.
func TestCosignVerifyAttestationPath(t *testing.T) {
	k := loadTestKeys(t)
	digest, _ := attachToRegistry(t, k)

	pub, err := os.ReadFile(filepath.Join(k.dir, CosignPubFile))
	if err != nil {
		t.Fatal(err)
	}
	v, err := loadPublicKeyRaw(t, pub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	co := &cosign.CheckOpts{SigVerifier: v, IgnoreTlog: true, ClaimVerifier: cosign.IntotoSubjectClaimVerifier}
	atts, _, err := cosign.VerifyImageAttestations(ctx, digest, co)
	if err != nil {
		t.Fatalf("cosign rejects our attestation: %v", err)
	}
	if len(atts) != 1 {
		t.Fatalf("verified %d attestations, want 1", len(atts))
	}
	// What `--type` filtering does (cosign pkg/policy.AttestationToPayloadJSON,
	// not imported: its CLI options package drags in every cloud SDK): decode
	// the envelope payload as an in-toto statement and compare predicateType.
	raw, err := atts[0].Payload()
	if err != nil {
		t.Fatal(err)
	}
	var env struct {
		Payload []byte `json:"payload"`
	}
	if err := json.Unmarshal(raw, &env); err != nil {
		t.Fatal(err)
	}
	var st in_toto.Statement
	if err := json.Unmarshal(env.Payload, &st); err != nil {
		t.Fatalf("cosign cannot decode our statement: %v", err)
	}
	if st.PredicateType != PromotionPredicateType {
		t.Errorf("cosign sees predicateType %q, want %q", st.PredicateType, PromotionPredicateType)
	}

	// A different key must not verify.
	other := loadTestKeys(t)
	otherPub, err := other.signer.PublicKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	ov, err := loadPublicKeyRaw(t, otherPub, crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	co.SigVerifier = ov
	if _, _, err := cosign.VerifyImageAttestations(ctx, digest, co); err == nil {
		t.Error("cosign verified our attestation with another key")
	}
}

// TestCosignBinary runs the real cosign CLI (built into bin/ by `make tools`).
// It is the only proof that cosign itself accepts our attestations, so under
// CI (CI=true) a missing binary fails the test instead of passing it
// unnoticed; elsewhere it skips and says how to run it.
func TestCosignBinary(t *testing.T) {
	bin, err := filepath.Abs(filepath.Join("..", "..", "bin", "cosign"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
			t.Fatalf("cosign binary missing (%v): CI=true, so this fails rather than skips; run `make tools` first", err)
		}
		t.Skipf("cosign binary missing (%v); run `make tools` to run this test (with CI=true it fails instead)", err)
	}
	k := loadTestKeys(t)
	digest, env := attachToRegistry(t, k)
	cmd := exec.Command(bin, "verify-attestation",
		"--key", filepath.Join(k.dir, CosignPubFile),
		"--type", PromotionPredicateType,
		"--insecure-ignore-tlog=true",
		"--allow-http-registry=true",
		digest.String())
	// Keep cosign away from the user's TUF cache and the network.
	cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cosign verify-attestation: %v\nstdout: %s\nstderr: %s", err, out, stderr.String())
	}
	// cosign prints each verified envelope on a line of its own.
	var got, want struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &want); err != nil {
		t.Fatal(err)
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("cosign output is not an envelope: %v\n%s", err, out)
	}
	if got.Payload != want.Payload {
		t.Errorf("cosign verified a different payload:\n%s", out)
	}

	// The same command with another key must fail, or the check above proves
	// nothing.
	other := loadTestKeys(t)
	cmd = exec.Command(bin, "verify-attestation",
		"--key", filepath.Join(other.dir, CosignPubFile),
		"--type", PromotionPredicateType,
		"--insecure-ignore-tlog=true",
		"--allow-http-registry=true",
		digest.String())
	cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("cosign verified our attestation with another key:\n%s", out)
	}
}

// loadPublicKeyRaw is cosign's pkg/signature.LoadPublicKeyRaw (what
// `--key cosign.pub` ends in); that package is not imported because it pulls
// in the GitHub and GitLab clients for its key references.
func loadPublicKeyRaw(t *testing.T, pemBytes []byte, h crypto.Hash) (signature.Verifier, error) {
	t.Helper()
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(pemBytes)
	if err != nil {
		return nil, err
	}
	return signature.LoadVerifier(pub, h)
}
