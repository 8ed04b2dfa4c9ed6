package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
	"github.com/stagegate/stagegate/internal/ledger"
	"github.com/stagegate/stagegate/internal/ledger/ledgertest"
	"github.com/stagegate/stagegate/internal/oci"
	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/promotion"
	"github.com/stagegate/stagegate/internal/registry"
	"github.com/stagegate/stagegate/internal/signing/signingtest"
	"github.com/stagegate/stagegate/policies"
)

// A promotion to a stage with a target copies the image (streaming
// progress), records the copy, attaches the attestation and moves the
// stage tag on both repositories.
func TestPromotionWithCopyTagAndAttestation(t *testing.T) {
	l, _ := ledgertest.New(t)
	signer := signingtest.Signer(t)
	emb, err := registry.StartEmbedded("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { emb.Close() })
	sample, err := registry.Seed(context.Background(), emb.Host)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Stages[0].Attest = true
	cfg.Stages[0].Tag = "{{repository}}:{{stage}}"
	cfg.Stages[0].Target = emb.Host + "/mirror"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	pol, err := policy.New(context.Background(), policies.FS, cfg.PolicyData())
	if err != nil {
		t.Fatal(err)
	}
	rc := registry.New()
	stageOpts := map[string]promotion.StageOptions{}
	for _, s := range cfg.Stages {
		o := promotion.StageOptions{Attest: s.Attest, Tag: s.StageTag()}
		if s.Target != "" {
			o.Target = s.TargetRepository
		}
		stageOpts[s.Name] = o
	}
	svc := promotion.New(l, signer, pol, rc, cfg.StageNames(),
		promotion.WithRegistry(oci.NewAttacher(oci.WithRemoteOptions(rc.RemoteOptions)), stageOpts, nil))
	a := api.New(svc, l, api.NewAuthenticator(&api.TokenFile{Tokens: []api.Token{
		{SHA256: api.HashToken(pipelineToken), Subject: "ci", Groups: []string{"pipeline"}}}}), cfg.StageNames())
	mux := http.NewServeMux()
	a.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/promotions", strings.NewReader(promoteBody(sample.Index, "dev")))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	req.Header.Set("Authorization", "Bearer "+pipelineToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var progressLines int
	var final struct {
		Status int            `json:"status"`
		Body   ledger.Receipt `json:"body"`
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), `{"progress"`) {
			progressLines++
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &final); err != nil {
			t.Fatalf("final line %q: %v", sc.Text(), err)
		}
	}
	if final.Status != http.StatusCreated || progressLines == 0 {
		t.Fatalf("status %d after %d progress lines", final.Status, progressLines)
	}
	e := final.Body.Entry
	mirror := emb.Host + "/mirror/sample/multi"
	if len(e.Copies) != 1 || e.Copies[0] != mirror {
		t.Fatalf("copies = %v, want [%s]", e.Copies, mirror)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, repo := range []string{e.Repository, mirror} {
		d, err := rc.Digest(ctx, repo+":dev")
		if err != nil || d != e.Digest {
			t.Errorf("%s:dev = %s, %v; want %s", repo, d, err, e.Digest)
		}
		ref, _ := name.ParseReference(repo + ":sha256-" + strings.TrimPrefix(e.Digest, "sha256:") + ".att")
		if _, err := remote.Head(ref); err != nil {
			t.Errorf("no attestation on %s: %v", repo, err)
		}
	}
	hist, err := l.History(mirror)
	if err != nil || len(hist) != 1 {
		t.Fatalf("history of the copy: %v %v", hist, err)
	}
}
