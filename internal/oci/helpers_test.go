package oci

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ociremote "github.com/sigstore/cosign/v2/pkg/oci/remote"

	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// testKeys is a cosign key pair made by signing.GenerateKeys, with an empty
// password (COSIGN_PASSWORD="" for the cosign CLI).
type testKeys struct {
	dir      string
	signer   *signing.Signer
	verifier *signing.Verifier
}

func (k testKeys) key() string { return filepath.Join(k.dir, signing.CosignKeyFile) }
func (k testKeys) pub() string { return filepath.Join(k.dir, signing.CosignPubFile) }

func newKeys(t *testing.T) testKeys {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	if err := signing.GenerateKeys(dir, []byte{}, "test.stagegate"); err != nil {
		t.Fatal(err)
	}
	k := testKeys{dir: dir}
	var err error
	if k.signer, err = signing.LoadSigner(k.key(), []byte{}); err != nil {
		t.Fatal(err)
	}
	if k.verifier, err = signing.LoadVerifier(k.pub()); err != nil {
		t.Fatal(err)
	}
	return k
}

// sign makes a DSSE envelope of a stagegate statement about repo@digest.
func (k testKeys) sign(t *testing.T, repo, digest, predicateType string, predicate any) []byte {
	t.Helper()
	st, err := signing.NewStatement(repo, digest, predicateType, predicate)
	if err != nil {
		t.Fatal(err)
	}
	env, err := k.signer.Sign(st)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

func promotion(repo, stage string, at time.Time) signing.PromotionPredicate {
	return signing.PromotionPredicate{
		Stage: stage, Repository: repo, Requester: signing.Requester{Subject: "ci", Groups: []string{"pipelines"}},
		Reason: "release", Time: at, LedgerIndex: 3, Labels: map[string]string{"team": "a"},
	}
}

// isolateDockerConfig points the Docker config keychain at an empty
// directory (or at auths, when given) so that the host's credentials never
// leak into a test.
func isolateDockerConfig(t *testing.T, auths map[string]authn.AuthConfig) {
	t.Helper()
	dir := t.TempDir()
	if len(auths) > 0 {
		cfg := map[string]any{"auths": map[string]any{}}
		for host, a := range auths {
			cfg["auths"].(map[string]any)[host] = map[string]string{
				"auth": base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password)),
			}
		}
		b, err := json.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("DOCKER_CONFIG", dir)
}

// cosignBin returns bin/cosign, failing (not skipping) when it is missing:
// `make test` builds it first.
func cosignBin(t *testing.T) string {
	t.Helper()
	p := filepath.Join(framework.RepoRoot(t), "bin", "cosign")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (%v): run hack/tools.sh cosign registry", p, err)
	}
	return p
}

// startRegistry starts the real distribution registry (bin/registry).
func startRegistry(t *testing.T, opts ...framework.RegistryOption) *framework.Registry {
	t.Helper()
	p := filepath.Join(framework.RepoRoot(t), "bin", "registry")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not found (%v): run hack/tools.sh cosign registry", p, err)
	}
	return framework.StartRegistry(t, opts...)
}

// runCosign runs the cosign CLI away from the user's TUF cache, home and
// the network, with the empty key password.
func runCosign(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, cosignBin(t), args...)
	cmd.Env = append(os.Environ(), "TUF_ROOT="+t.TempDir(), "HOME="+t.TempDir(), "COSIGN_PASSWORD=",
		"COSIGN_EXPERIMENTAL=0", "SIGSTORE_NO_CACHE=true")
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

// pushImage pushes a random single-platform image and returns its digest.
func pushImage(t *testing.T, repo string, opts ...remote.Option) string {
	t.Helper()
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	return pushTo(t, repo, img, opts...)
}

// pushIndex pushes a random linux/amd64 + linux/arm64 index and returns its
// digest and the digests of its two images.
func pushIndex(t *testing.T, repo string, opts ...remote.Option) (string, []string) {
	t.Helper()
	var adds []mutate.IndexAddendum
	var children []string
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(2048, 2)
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, d.String())
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: arch},
		}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return pushTo(t, repo, idx, opts...), children
}

func pushTo(t *testing.T, repo string, w remote.Taggable, opts ...remote.Option) string {
	t.Helper()
	ref, err := name.NewTag(repo + ":build")
	if err != nil {
		t.Fatal(err)
	}
	switch v := w.(type) {
	case v1.ImageIndex:
		err = remote.WriteIndex(ref, v, opts...)
	case v1.Image:
		err = remote.Write(ref, v, opts...)
	}
	if err != nil {
		t.Fatal(err)
	}
	d, err := w.(interface{ Digest() (v1.Hash, error) }).Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// attestationPayloads returns the envelopes under the .att tag of
// repo@digest.
func attestationPayloads(t *testing.T, repo, digest string, opts ...remote.Option) [][]byte {
	t.Helper()
	ref, err := name.NewDigest(repo + "@" + digest)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := ociremote.AttestationTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	sigs, err := ociremote.Signatures(tag, ociremote.WithRemoteOptions(opts...))
	if err != nil {
		t.Fatal(err)
	}
	list, err := sigs.Get()
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for _, s := range list {
		p, err := s.Payload()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}
