package approvals

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/stagegate/stagegate/test/e2e/framework"
)

const promotionType = "https://stagegate.dev/promotion/v1"

// TestPipelineWaitsForApproval: the pipeline (group pipeline) asks for
// prod, where one approval from security is needed, with `promote --wait`,
// which blocks; the pipeline cannot approve its own request; alice
// (security) approves with the CLI; the pipeline then gets the receipt,
// which verifies offline, and `cosign verify-attestation` shows alice's
// approval in the promotion predicate attached to the image.
func TestPipelineWaitsForApproval(t *testing.T) {
	reg := framework.StartRegistry(t)
	cosign := framework.Tool(t, "cosign", "cosign")
	sg := framework.StartStagegate(t,
		framework.WithToken("", "ci", "pipeline"),
		framework.WithToken("", "alice", "security"),
		framework.WithConfig(fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [pipeline], minSoak: 0s}
- {name: prod, groups: [pipeline], minSoak: 0s, attest: true, approvals: {required: 1, groups: [security]}}
`, reg.Addr)))
	pipeline, alice := sg.Tokens[0], sg.Tokens[1]
	command := func(ctx context.Context, token string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
		if token != "" {
			args = sg.ClientFlags(args...)
		}
		cmd := exec.CommandContext(ctx, sg.Bin, args...)
		cmd.Dir = sg.Dir
		cmd.Env = append(os.Environ(), "STAGEGATE_TOKEN="+token)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		return cmd, &o, &e
	}
	run := func(token string, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		cmd, o, e := command(ctx, token, args...)
		err := cmd.Run()
		return o.String(), e.String(), err
	}

	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	tagged, err := name.ParseReference(reg.Repo("e2e/approved:v1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(tagged, img, remote.WithContext(t.Context()), remote.WithTransport(reg.Transport())); err != nil {
		t.Fatal(err)
	}
	ref := reg.Repo("e2e/approved") + "@" + d.String()
	if _, stderr, err := run(pipeline, "promote", ref, "--stage", "dev", "--reason", "build 1", "-o", os.DevNull); err != nil {
		t.Fatalf("promote dev: %v\n%s", err, stderr)
	}

	receipt := filepath.Join(t.TempDir(), "receipt.json")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	wait, waitOut, waitErr := command(ctx, pipeline, "promote", ref, "--stage", "prod", "--reason", "release 1", "--wait",
		"--wait-interval", "200ms", "-o", receipt)
	if err := wait.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- wait.Wait() }()

	// The request appears (bounded wait), while promote --wait blocks.
	var id uint64
	deadline := time.Now().Add(60 * time.Second)
	for id == 0 {
		out, stderr, err := run(alice, "requests", "--stage", "prod", "--state", "pending", "-o", "json")
		if err != nil {
			t.Fatalf("requests: %v\n%s", err, stderr)
		}
		var list struct {
			Requests []struct {
				ID uint64 `json:"id"`
			} `json:"requests"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("requests printed %q: %v", out, err)
		}
		if len(list.Requests) == 1 {
			id = list.Requests[0].ID
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("promote --wait exited (%v) before any approval:\n%s", err, waitErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("no pending request after 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	sid := fmt.Sprint(id)
	if _, stderr, err := run(pipeline, "approve", sid, "--reason", "my own"); err == nil || !strings.Contains(stderr, "their own") {
		t.Fatalf("the pipeline approving its own request: %v\n%s", err, stderr)
	}
	select {
	case err := <-exited:
		t.Fatalf("promote --wait exited (%v) without an approval:\n%s", err, waitErr)
	default:
	}
	if _, stderr, err := run(alice, "approve", sid, "--reason", "scan clean", "-o", os.DevNull); err != nil {
		t.Fatalf("alice approves: %v\n%s", err, stderr)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("promote --wait: %v\n%s\n%s", err, waitOut, waitErr)
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("promote --wait still blocked 2m after the approval:\n%s", waitErr)
	}
	if !strings.Contains(waitErr.String(), "approved by alice (security): scan clean") {
		t.Errorf("promote --wait said:\n%s\nwant the approval shown", waitErr)
	}

	keys := sg.KeysDir
	// Offline: no server, no token.
	if _, stderr, err := run("", "receipt", "verify", receipt, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub")); err != nil {
		t.Fatalf("receipt verify: %v\n%s", err, stderr)
	}
	rc, err := os.ReadFile(receipt)
	if err != nil || !strings.Contains(string(rc), `"approvals"`) || !strings.Contains(string(rc), `"alice"`) {
		t.Fatalf("receipt %s (%v) does not list alice's approval", rc, err)
	}

	// cosign, anonymous, sees the approval in the attached predicate.
	tools := t.TempDir()
	vc := exec.CommandContext(t.Context(), cosign, "verify-attestation", "--key", filepath.Join(keys, "cosign.pub"), "--type", promotionType,
		"--insecure-ignore-tlog", "--allow-http-registry", "--allow-insecure-registry", ref)
	vc.Env = append(os.Environ(), "TUF_ROOT="+filepath.Join(tools, "tuf"), "DOCKER_CONFIG="+tools)
	var vo, ve bytes.Buffer
	vc.Stdout, vc.Stderr = &vo, &ve
	if err := vc.Run(); err != nil {
		t.Fatalf("cosign verify-attestation: %v\n%s%s", err, vo.String(), ve.String())
	}
	found := false
	sc := bufio.NewScanner(&vo)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var env struct {
			Payload string `json:"payload"`
		}
		if json.Unmarshal(sc.Bytes(), &env) != nil {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			continue
		}
		var st struct {
			Predicate struct {
				Stage     string `json:"stage"`
				Request   *uint64
				Approvals []struct {
					Subject string   `json:"subject"`
					Groups  []string `json:"groups"`
					Reason  string   `json:"reason"`
				} `json:"approvals"`
			} `json:"predicate"`
		}
		if json.Unmarshal(raw, &st) != nil {
			continue
		}
		p := st.Predicate
		if p.Stage == "prod" && p.Request != nil && *p.Request == id && len(p.Approvals) == 1 && p.Approvals[0].Subject == "alice" &&
			p.Approvals[0].Reason == "scan clean" && len(p.Approvals[0].Groups) == 1 && p.Approvals[0].Groups[0] == "security" {
			found = true
		}
	}
	if !found {
		t.Errorf("no verified prod promotion attestation lists alice's approval of request %d:\n%s", id, vo.String())
	}
}
