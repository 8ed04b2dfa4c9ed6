package approvals

import (
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

	"github.com/stagegate/stagegate/test/e2e/framework"
)

// freezeLength is how long the one-off freeze lasts from the test's start:
// long enough to open and approve two requests through the CLI while prod
// is closed. serve takes no injected clock, so the freeze is a real one
// that ends; the test never sleeps on it, it waits for what the ledger
// says.
const freezeLength = 45 * time.Second

// TestFreezeThroughServe: a real serve, registry and CLI, prod needing one
// approval from security and frozen by a one-off window that ends shortly.
//
//   - During the freeze the pipeline requests image A and alice (security)
//     approves: the request waits for the window. At the opening serve's
//     completer (leader-only; a single node leads) completes it by itself,
//     without a freeze override.
//   - During the freeze the pipeline asks for an emergency promotion of B
//     (--freeze-override): a request marked as such, which the quorum
//     alone does not complete; the on-call engineer (sre, in
//     freezeOverrideGroups) approves and B is promoted during the freeze,
//     its signed receipt recording the freeze and who approved it.
func TestFreezeThroughServe(t *testing.T) {
	framework.BuildBinary(t, "./cmd/stagegate") // before the clock starts: a first build is slow
	reg := framework.StartRegistry(t)
	start := time.Now().UTC()
	opens := start.Add(freezeLength).Truncate(time.Second)
	sg := framework.StartStagegate(t,
		framework.WithToken("", "ci", "pipeline"),
		framework.WithToken("", "alice", "security"),
		framework.WithToken("", "oncall", "sre"),
		framework.WithConfig(fmt.Sprintf(`registries:
- host: %s
  insecure: true
stages:
- {name: dev, groups: [pipeline], minSoak: 0s}
- name: prod
  groups: [pipeline]
  minSoak: 0s
  approvals: {required: 1, groups: [security]}
  freezeOverrideGroups: [sre]
  windows:
  - {deny: e2e freeze, start: %q, end: %q}
`, reg.Addr, start.Add(-time.Hour).Format(time.RFC3339), opens.Format(time.RFC3339))))
	pipeline, alice, oncall := sg.Tokens[0], sg.Tokens[1], sg.Tokens[2]
	run := func(token string, args ...string) (string, string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		if token != "" {
			args = sg.ClientFlags(args...)
		}
		cmd := exec.CommandContext(ctx, sg.Bin, args...)
		cmd.Dir = sg.Dir
		cmd.Env = append(os.Environ(), "STAGEGATE_TOKEN="+token)
		var o, e bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		return o.String(), e.String(), err
	}
	must := func(token string, args ...string) (string, string) {
		t.Helper()
		out, stderr, err := run(token, args...)
		if err != nil {
			t.Fatalf("stagegate %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		return out, stderr
	}
	type view struct {
		ID               uint64 `json:"id"`
		State            string `json:"state"`
		Digest           string `json:"digest"`
		Needed           int    `json:"needed"`
		Waits            string `json:"waits"`
		FreezeOverride   bool   `json:"freezeOverride"`
		FreezeApprovedBy string `json:"freezeApprovedBy"`
		Promotion        *uint64
	}
	requestOf := func(digest, state string) *view {
		t.Helper()
		out, _ := must(alice, "requests", "--stage", "prod", "--state", state, "-o", "json")
		var list struct{ Requests []view }
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatalf("requests printed %q: %v", out, err)
		}
		for _, v := range list.Requests {
			if v.Digest == digest {
				return &v
			}
		}
		return nil
	}

	var refs, digests [2]string
	for i := range refs {
		ref, err := reg.PushRandom(fmt.Sprintf("e2e/frozen-%d:v1", i))
		if err != nil {
			t.Fatal(err)
		}
		refs[i], digests[i] = ref, ref[strings.LastIndex(ref, "@")+1:]
		must(pipeline, "promote", ref, "--stage", "dev", "--reason", "build", "-o", os.DevNull)
	}

	// A: an ordinary request, approved during the freeze, waits.
	must(pipeline, "promote", refs[0], "--stage", "prod", "--reason", "release A", "-o", os.DevNull)
	a := requestOf(digests[0], "pending")
	if a == nil {
		t.Fatal("no pending request for A")
	}
	must(alice, "approve", fmt.Sprint(a.ID), "--reason", "scan clean", "-o", os.DevNull)
	if a = requestOf(digests[0], "pending"); a == nil || a.Needed != 0 || !strings.Contains(a.Waits, "waits for the window") {
		t.Fatalf("A approved during the freeze: %+v, want pending and waiting for the window", a)
	}

	// B: an emergency; the quorum alone does not pass the freeze.
	_, stderr := must(pipeline, "promote", refs[1], "--stage", "prod", "--reason", "INC-7: checkout down", "--freeze-override", "-o", os.DevNull)
	if !strings.Contains(stderr, "an emergency promotion during a freeze") || !strings.Contains(stderr, "sre") {
		t.Errorf("promote --freeze-override said:\n%s", stderr)
	}
	b := requestOf(digests[1], "pending")
	if b == nil || !b.FreezeOverride || b.Needed != 2 {
		t.Fatalf("emergency request: %+v, want pending, marked, needing the quorum and the freeze approval", b)
	}
	if _, stderr, err := run(pipeline, "approve", fmt.Sprint(b.ID), "--reason", "me"); err == nil || !strings.Contains(stderr, "their own") {
		t.Fatalf("the pipeline approving its own emergency: %v\n%s", err, stderr)
	}
	must(alice, "approve", fmt.Sprint(b.ID), "--reason", "scan clean", "-o", os.DevNull)
	if b = requestOf(digests[1], "pending"); b == nil || b.Needed != 1 || b.Waits != "" {
		t.Fatalf("emergency with its quorum: %+v, want pending, needing the freeze approval", b)
	}
	answer, _ := must(oncall, "approve", fmt.Sprint(b.ID), "--reason", "INC-7 confirmed", "-o", "json")
	if time.Now().After(opens) {
		t.Fatalf("the CLI steps took longer than the %s freeze: raise freezeLength", freezeLength)
	}
	var ans struct{ Receipt json.RawMessage }
	if err := json.Unmarshal([]byte(answer), &ans); err != nil {
		t.Fatalf("approve printed %q: %v", answer, err)
	}
	rc := []byte(ans.Receipt)
	receipt := filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(receipt, rc, 0o600); err != nil {
		t.Fatal(err)
	}
	var got receiptEntry
	if err := json.Unmarshal(rc, &got); err != nil || got.Entry.Kind != "promotion" || !got.Entry.FreezeOverride {
		t.Fatalf("the freeze approval's answer %s (%v): want the promotion, marked as a freeze override", rc, err)
	}
	pred := predicateOf(t, got.Entry.Envelope.Payload)
	if fo := pred.FreezeOverride; fo == nil || fo.Window != "e2e freeze" || fo.ApprovedBy != "oncall" || !fo.NextOpen.Equal(opens) || len(pred.Approvals) != 2 {
		t.Errorf("emergency promotion predicate: freezeOverride %+v, approvals %+v", pred.FreezeOverride, pred.Approvals)
	}
	keys := sg.KeysDir
	if _, stderr, err := run("", "receipt", "verify", receipt, "--key", filepath.Join(keys, "cosign.pub"), "--log-key", filepath.Join(keys, "log.pub")); err != nil {
		t.Fatalf("receipt verify: %v\n%s", err, stderr)
	}

	// At the opening the completer completes A: wait for the ledger to
	// say so (bounded), not for a time.
	deadline := opens.Add(2 * time.Minute)
	for a = requestOf(digests[0], "approved"); a == nil; a = requestOf(digests[0], "approved") {
		if time.Now().After(deadline) {
			t.Fatalf("A not completed 2m after the opening at %s; serve's log:\n%s", opens, sg.Logs())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !strings.Contains(sg.Logs(), "request completed at the window's opening") {
		t.Errorf("serve's log does not say the completer completed A:\n%s", sg.Logs())
	}
	// Asking again returns A's promotion: completed by alice's approval,
	// and with no freeze override, as the stage was open.
	out, _ := must(pipeline, "promote", refs[0], "--stage", "prod", "--reason", "release A", "-o", "json")
	var gotA receiptEntry
	if err := json.Unmarshal([]byte(out), &gotA); err != nil || gotA.Entry.Kind != "promotion" || gotA.Entry.FreezeOverride {
		t.Fatalf("A's receipt %s (%v)", out, err)
	}
	if pa := predicateOf(t, gotA.Entry.Envelope.Payload); pa.FreezeOverride != nil || pa.Request == nil || *pa.Request != a.ID ||
		len(pa.Approvals) != 1 || pa.Approvals[0].Subject != "alice" {
		t.Errorf("A's predicate: request %v, approvals %+v, freezeOverride %+v", pa.Request, pa.Approvals, pa.FreezeOverride)
	}
}

// receiptEntry is what the test reads of a receipt's entry.
type receiptEntry struct {
	Entry struct {
		Kind           string `json:"kind"`
		FreezeOverride bool   `json:"freezeOverride"`
		Envelope       struct {
			Payload string `json:"payload"`
		} `json:"envelope"`
	} `json:"entry"`
}

type freezePredicate struct {
	Request        *uint64 `json:"request"`
	FreezeOverride *struct {
		Window     string    `json:"window"`
		NextOpen   time.Time `json:"nextOpen"`
		ApprovedBy string    `json:"approvedBy"`
	} `json:"freezeOverride"`
	Approvals []struct {
		Subject string `json:"subject"`
	} `json:"approvals"`
}

// predicateOf decodes a DSSE payload's predicate; the receipt's signature
// is checked by `receipt verify`.
func predicateOf(t *testing.T, payload string) freezePredicate {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Predicate freezePredicate `json:"predicate"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		t.Fatal(err)
	}
	return st.Predicate
}
