package registry

import (
	"bytes"
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

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/test/e2e/framework"
)

// randomImage is a new single-layer image whose config carries labels.
func randomImage(t testing.TB, labels map[string]string) v1.Image {
	t.Helper()
	img, err := random.Image(1024, 1)
	if err != nil {
		t.Fatal(err)
	}
	if len(labels) > 0 {
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cfg := cf.Config.DeepCopy()
		cfg.Labels = labels
		if img, err = mutate.Config(img, *cfg); err != nil {
			t.Fatal(err)
		}
	}
	return img
}

// pushImage pushes a new random image to reg as <repo>:v1 and returns its
// digest-pinned reference.
func pushImage(t testing.TB, reg *framework.Registry, repo string, labels map[string]string) string {
	t.Helper()
	img := randomImage(t, labels)
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := parseRef(t, reg.Repo(repo)+":v1")
	if err := remote.Write(ref, img, remoteOpts(t, reg)...); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return reg.Repo(repo) + "@" + d.String()
}

// platforms are the platforms of the index the copy scenario promotes.
var platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64"}}

// pushIndex pushes an index of one random image per platform to reg as
// <repo>:v1 and returns its digest-pinned reference and the digests of its
// platform manifests.
func pushIndex(t testing.TB, reg *framework.Registry, repo string) (string, []string) {
	t.Helper()
	var idx v1.ImageIndex = empty.Index
	var children []string
	for _, p := range platforms {
		img := randomImage(t, map[string]string{"org.opencontainers.image.title": repo})
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		children = append(children, d.String())
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add: img, Descriptor: v1.Descriptor{Platform: &p},
		})
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := parseRef(t, reg.Repo(repo)+":v1")
	if err := remote.WriteIndex(ref, idx, remoteOpts(t, reg)...); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	return reg.Repo(repo) + "@" + d.String(), children
}

func remoteOpts(t testing.TB, reg *framework.Registry) []remote.Option {
	return []remote.Option{remote.WithContext(t.Context()), remote.WithTransport(reg.Transport()),
		remote.WithAuth(reg.Authenticator())}
}

func parseRef(t testing.TB, s string) name.Reference {
	t.Helper()
	ref, err := name.ParseReference(s)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// manifestExists reports whether ref (repository@digest) is in reg.
func manifestExists(t testing.TB, reg *framework.Registry, ref string) bool {
	t.Helper()
	_, err := remote.Head(parseRef(t, ref), remoteOpts(t, reg)...)
	return err == nil
}

// tools runs the real cosign and crane CLIs from bin/.
type tools struct {
	cosign, crane string
	// dir is the working directory of cosign (its keys) and TUF_ROOT.
	dir string
}

func newTools(t testing.TB) *tools {
	t.Helper()
	return &tools{cosign: framework.Tool(t, "cosign", "cosign"), crane: framework.Tool(t, "crane", "crane"), dir: t.TempDir()}
}

// cosignPassword encrypts the keys cosign generates (pipeline, untrusted).
const cosignPassword = "e2e-cosign-password"

// exec runs bin, with dockerConfig as DOCKER_CONFIG (an empty directory
// means anonymous) and cosign's password and prompt settings.
func (tl *tools) exec(t testing.TB, dockerConfig, bin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = tl.dir
	cmd.Env = append(os.Environ(), "COSIGN_PASSWORD="+cosignPassword, "COSIGN_YES=true",
		"TUF_ROOT="+filepath.Join(tl.dir, "tuf"), "DOCKER_CONFIG="+dockerConfig)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// generateKey makes a cosign key pair <prefix>.key/.pub with the real CLI
// and returns the paths.
func (tl *tools) generateKey(t testing.TB, prefix string) (key, pub string) {
	t.Helper()
	if _, stderr, err := tl.exec(t, tl.anonymous(t), tl.cosign, "generate-key-pair", "--output-key-prefix", prefix); err != nil {
		t.Fatalf("cosign generate-key-pair: %v\n%s", err, stderr)
	}
	return filepath.Join(tl.dir, prefix+".key"), filepath.Join(tl.dir, prefix+".pub")
}

// attest attaches predicate (JSON) as an attestation of type predType to
// ref with `cosign attest`, signed by key, without a transparency log.
func (tl *tools) attest(t testing.TB, key, predType string, predicate any, ref string) {
	t.Helper()
	b, err := json.Marshal(predicate)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(tl.dir, "predicate-*.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, stderr, err := tl.exec(t, tl.anonymous(t), tl.cosign, "attest", "--key", key, "--type", predType,
		"--predicate", f.Name(), "--tlog-upload=false", "--allow-http-registry", ref); err != nil {
		t.Fatalf("cosign attest %s: %v\n%s", ref, err, stderr)
	}
}

// attach attaches a signed DSSE envelope to ref with
// `cosign attach attestation`.
func (tl *tools) attach(t testing.TB, envelope []byte, ref string) {
	t.Helper()
	f := filepath.Join(tl.dir, "envelope-"+strings.ReplaceAll(digestOf(ref), ":", "-")+".json")
	writeFile(t, f, string(envelope), 0o600)
	if _, stderr, err := tl.exec(t, tl.anonymous(t), tl.cosign, "attach", "attestation", "--attestation", f,
		"--allow-http-registry", ref); err != nil {
		t.Fatalf("cosign attach attestation %s: %v\n%s", ref, err, stderr)
	}
}

// verifyAttestation runs `cosign verify-attestation` and returns its error
// and output: nil means cosign accepted an attestation of predType on ref
// signed by pub.
func (tl *tools) verifyAttestation(t testing.TB, dockerConfig, pub, predType, ref string) (string, error) {
	t.Helper()
	stdout, stderr, err := tl.exec(t, dockerConfig, tl.cosign, "verify-attestation", "--key", pub,
		"--type", predType, "--insecure-ignore-tlog", "--allow-http-registry", "--allow-insecure-registry", ref)
	return stdout + stderr, err
}

// craneDigest returns what `crane digest ref` prints.
func (tl *tools) craneDigest(t testing.TB, dockerConfig, ref string) string {
	t.Helper()
	out, stderr, err := tl.exec(t, dockerConfig, tl.crane, "digest", ref)
	if err != nil {
		t.Fatalf("crane digest %s: %v\n%s", ref, err, stderr)
	}
	return strings.TrimSpace(out)
}

// anonymous is an empty Docker config directory: no credentials.
func (tl *tools) anonymous(t testing.TB) string {
	t.Helper()
	p := filepath.Join(tl.dir, "docker-anonymous")
	if err := os.MkdirAll(p, 0o700); err != nil {
		t.Fatal(err)
	}
	return p
}

// dockerConfig writes a Docker config directory whose config.json holds
// auth for host, and returns the directory.
func dockerConfig(t testing.TB, host string, auth authn.Authenticator) string {
	t.Helper()
	a, err := auth.Authorization()
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{"auths": map[string]any{host: map[string]string{
		"auth": base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password)),
	}}}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "config.json"), string(b), 0o600)
	return dir
}

// statement is the part of an in-toto statement the suite reads.
type statement struct {
	PredicateType string `json:"predicateType"`
	Predicate     struct {
		Stage            string            `json:"stage"`
		Labels           map[string]string `json:"labels"`
		Copies           []string          `json:"copies"`
		VerifiedEvidence map[string]any    `json:"verifiedEvidence"`
	} `json:"predicate"`
}

// envelopePayload returns the signed payload of a DSSE envelope.
func envelopePayload(t testing.TB, env []byte) string {
	t.Helper()
	var e struct {
		Payload string `json:"payload"`
	}
	if err := json.Unmarshal(env, &e); err != nil {
		t.Fatalf("envelope: %v", err)
	}
	b, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		t.Fatalf("envelope payload: %v", err)
	}
	return string(b)
}

// decodeEnvelope returns the statement a DSSE envelope carries.
func decodeEnvelope(t testing.TB, env []byte) statement {
	t.Helper()
	b := []byte(envelopePayload(t, env))
	var st statement
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("statement: %v", err)
	}
	return st
}

// decodeReceipt parses a promotion receipt as the API returns it.
func decodeReceipt(t testing.TB, body []byte) ledger.Receipt {
	t.Helper()
	var rc ledger.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		t.Fatalf("receipt: %v\n%s", err, body)
	}
	return rc
}
