package reliability

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/signing"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/test/e2e/framework"
	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// logOrigin names the test ledger in its checkpoints: the name of the
// checkpoint key that signingtest.WriteKeyDir writes.
const logOrigin = signingtest.LogName

// env is one stagegate installation on disk (keys, serving certificate,
// bearer tokens, config file, data directory) and the registry it promotes
// from. Servers started from it (e.sg.Start, e.sg.Spawn) share the data
// directory, so a restart reopens the same ledger.
type env struct {
	t       *testing.T
	sg      *framework.Stagegate
	bin     string
	dataDir string
	config  string
	addr    string
	reg     *framework.Registry
	// tokens are bearer tokens of distinct subjects (all in the pipeline
	// and release groups): the API rate-limits writes per identity, and the
	// tests want to measure the ledger, not the limiter.
	tokens []string
	client *http.Client
	logV   note.Verifier
	check  func(ledger.Entry) error
	tags   atomic.Int64
}

type envOptions struct {
	dataDir string
	tokens  int
}

type envOption func(*envOptions)

// withDataDir puts the data directory (the ledger) at dir, e.g. on a small
// tmpfs.
func withDataDir(dir string) envOption { return func(o *envOptions) { o.dataDir = dir } }

// withTokens sets how many client identities exist (default 8).
func withTokens(n int) envOption { return func(o *envOptions) { o.tokens = n } }

// newEnv prepares the installation; the test starts serve with e.sg.Start.
// Its checkpoints and attestations verify with signingtest's keys.
func newEnv(t *testing.T, reg *framework.Registry, opts ...envOption) *env {
	t.Helper()
	o := envOptions{tokens: 8}
	for _, opt := range opts {
		opt(&o)
	}
	sgOpts := []framework.StagegateOption{
		framework.WithoutStart(),
		framework.WithKeys(func(dir string) { signingtest.WriteKeyDir(t, dir) }),
		framework.WithConfig(fmt.Sprintf("logOrigin: %s\nregistries:\n- {host: %q, insecure: true}\n", logOrigin, reg.Addr)),
	}
	if o.dataDir != "" {
		sgOpts = append(sgOpts, framework.WithDataDir(o.dataDir))
	}
	for i := range o.tokens {
		sgOpts = append(sgOpts, framework.WithToken("", fmt.Sprintf("client-%d", i), "pipeline", "release"))
	}
	sg := framework.StartStagegate(t, sgOpts...)
	e := &env{
		t: t, sg: sg, bin: sg.Bin, dataDir: sg.DataDir, config: sg.ConfigPath, addr: sg.Addr,
		reg: reg, tokens: sg.Tokens,
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: sg.CAPool(t), MinVersion: tls.VersionTLS12}
	tr.MaxIdleConnsPerHost = 128
	e.client = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)

	e.logV = signingtest.LogVerifier(t)
	e.check = signing.CheckEntry(signingtest.Verifier(t))
	return e
}

// exitWithin returns p's exit status, failing the test if it is still
// running after d.
func exitWithin(t testing.TB, p *process.Process, d time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	err := p.Wait(ctx)
	if ctx.Err() != nil {
		p.Kill()
		t.Fatalf("serve still running after %v:\n%s", d, p.Tail(8<<10))
	}
	return err
}

// ledgerVerify runs `stagegate ledger verify`; serve must be stopped.
func (e *env) ledgerVerify() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.bin, "ledger", "verify", "--config", e.config).CombinedOutput()
	return string(out), err
}

func (e *env) mustLedgerVerify() {
	e.t.Helper()
	if out, err := e.ledgerVerify(); err != nil {
		e.t.Fatalf("stagegate ledger verify: %v\n%s", err, out)
	}
}

// do sends one API request with the bearer token and returns the status and
// body. A transport error is returned as is: its outcome is unknown.
func (e *env) do(method, path, token string, body any) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "https://"+e.addr+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// promote overrides a revocation of image in dev, if there is one (the
// clients are in dev's override groups): revocations are sticky, and the
// interleaving test puts revoked digests back on purpose.
func (e *env) promote(token, image string) (int, []byte, error) {
	return e.do(http.MethodPost, "/v1/promotions", token, map[string]any{"image": image, "stage": "dev", "reason": "reliability test", "overrideRevocation": true})
}

func (e *env) revoke(token, digest string) (int, []byte, error) {
	return e.do(http.MethodPost, "/v1/revocations", token, map[string]string{"digest": digest, "stage": "dev", "reason": "reliability test"})
}

// get fetches a read endpoint that must answer 200 and decodes its JSON
// into v (or stores the raw text when v is a *string).
func (e *env) get(path string, v any) {
	e.t.Helper()
	code, b, err := e.do(http.MethodGet, path, e.tokens[0], nil)
	if err != nil || code != http.StatusOK {
		e.t.Fatalf("GET %s: %d %v %s", path, code, err, b)
	}
	if s, ok := v.(*string); ok {
		*s = string(b)
		return
	}
	if err := json.Unmarshal(b, v); err != nil {
		e.t.Fatalf("GET %s: %v", path, err)
	}
}

// checkpoint fetches and verifies the latest checkpoint; an empty ledger
// gives the zero Checkpoint.
func (e *env) checkpoint() ledger.Checkpoint {
	e.t.Helper()
	code, b, err := e.do(http.MethodGet, "/v1/ledger/checkpoint", e.tokens[0], nil)
	if err == nil && code == http.StatusNotFound {
		return ledger.Checkpoint{}
	}
	if err != nil || code != http.StatusOK {
		e.t.Fatalf("GET checkpoint: %d %v %s", code, err, b)
	}
	cp, err := ledger.ParseCheckpoint(string(b), e.logV)
	if err != nil {
		e.t.Fatalf("checkpoint does not verify: %v\n%s", err, b)
	}
	return cp
}

// entries fetches the whole ledger through the API.
func (e *env) entries() []ledger.Entry {
	e.t.Helper()
	var all []ledger.Entry
	for {
		var page struct {
			Entries []ledger.Entry `json:"entries"`
		}
		e.get(fmt.Sprintf("/v1/ledger/entries?start=%d&limit=1000", len(all)), &page)
		if len(page.Entries) == 0 {
			return all
		}
		all = append(all, page.Entries...)
	}
}

// checkConsistent fetches a consistency proof from older to newer and
// verifies it; equal sizes must have equal roots.
func (e *env) checkConsistent(older, newer ledger.Checkpoint) error {
	switch {
	case newer.Size < older.Size:
		return fmt.Errorf("ledger shrank from %d to %d entries", older.Size, newer.Size)
	case older.Size == 0:
		return nil
	case older.Size == newer.Size:
		if !bytes.Equal(older.Root, newer.Root) {
			return fmt.Errorf("two roots for size %d", older.Size)
		}
		return nil
	}
	var p ledger.ConsistencyProof
	e.get(fmt.Sprintf("/v1/ledger/proof/consistency?from=%d&to=%d", older.Size, newer.Size), &p)
	return ledger.VerifyConsistency(older, newer, p)
}

// receipt decodes a promotion answer and verifies it offline: checkpoint
// signature, inclusion proof and attestation signature.
func (e *env) receipt(body []byte) (ledger.Receipt, ledger.Checkpoint, error) {
	var rc ledger.Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		return rc, ledger.Checkpoint{}, fmt.Errorf("decode receipt: %w", err)
	}
	if err := ledger.VerifyReceipt(rc, e.logV, e.check); err != nil {
		return rc, ledger.Checkpoint{}, err
	}
	cp, err := ledger.ParseCheckpoint(rc.Checkpoint, e.logV)
	return rc, cp, err
}

// canonical is the leaf data of an entry: what the Merkle tree hashes.
func canonical(t testing.TB, en ledger.Entry) []byte {
	b, err := json.Marshal(&en)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pushImage writes a new random image to repo in the registry and returns
// its digest reference.
func (e *env) pushImage(repo string) (string, error) {
	return e.reg.PushRandom(fmt.Sprintf("%s:t%d", repo, e.tags.Add(1)))
}

func (e *env) mustPush(repo string) string {
	e.t.Helper()
	ref, err := e.pushImage(repo)
	if err != nil {
		e.t.Fatalf("push: %v", err)
	}
	return ref
}

// pushMany pushes n images with a few workers.
func (e *env) pushMany(repo string, n int) []string {
	e.t.Helper()
	refs := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 4 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				refs[i], errs[i] = e.pushImage(repo)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		e.t.Fatalf("push: %v", err)
	}
	return refs
}

// digestOf returns the digest of a repo@digest reference.
func digestOf(ref string) string {
	for i := len(ref) - 1; i >= 0; i-- {
		if ref[i] == '@' {
			return ref[i+1:]
		}
	}
	return ""
}

// admit sends an AdmissionReview for a pod running image to the webhook of
// stage and checks that the answer is well formed (see decodeReview).
func (e *env) admit(stage, image string) (*admissionv1.AdmissionResponse, error) {
	body, uid, err := podReview(image)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Post("https://"+e.addr+"/admission/validate/"+stage, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return decodeReview(resp.StatusCode, b, uid)
}

// podReview is the AdmissionReview the API server sends for a new pod
// running image, with a fresh UID.
func podReview(image string) ([]byte, types.UID, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, "", err
	}
	uid := types.UID(hex.EncodeToString(rnd[:]))
	pod := map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "app-" + string(uid), "namespace": "team-a"},
		"spec":     map[string]any{"containers": []map[string]any{{"name": "app", "image": image}}},
	}
	raw, err := json.Marshal(pod)
	if err != nil {
		return nil, "", err
	}
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       uid,
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      "app-" + string(uid),
			Namespace: "team-a",
			Operation: admissionv1.Create,
			UserInfo:  authenticationv1.UserInfo{Username: "deployer"},
			Object:    runtime.RawExtension{Raw: raw},
		},
	})
	return body, uid, err
}

// decodeReview returns an error unless an admission answer is well formed:
// HTTP 200, an AdmissionReview v1 with the request's UID, and either allowed
// or denied with a message and a status that is not an internal error.
func decodeReview(status int, b []byte, uid types.UID) (*admissionv1.AdmissionResponse, error) {
	if status != http.StatusOK {
		return nil, fmt.Errorf("admission answered HTTP %d: %s", status, b)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("admission answer: %w: %s", err, b)
	}
	r := out.Response
	switch {
	case out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview":
		return nil, fmt.Errorf("admission answer is %s %s", out.APIVersion, out.Kind)
	case r == nil:
		return nil, fmt.Errorf("admission answer without response: %s", b)
	case r.UID != uid:
		return nil, fmt.Errorf("admission answer UID %q, want %q", r.UID, uid)
	case r.Allowed:
		return r, nil
	case r.Result == nil || r.Result.Message == "":
		return nil, fmt.Errorf("denied without a message: %s", b)
	case r.Result.Code >= 500:
		return nil, fmt.Errorf("admission could not decide (%d): %s", r.Result.Code, r.Result.Message)
	}
	return r, nil
}
