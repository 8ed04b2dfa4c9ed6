package admission

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/stagegate/stagegate/internal/policy"
)

// TestTrace checks that a traced review reports what it learned and decides
// as an untraced one.
func TestTrace(t *testing.T) {
	r := NewReviewer(testStates(), &fakePolicy{}, WithStages([]string{"prod"}), WithRecorder(&fakeRecorder{}))
	req := podRequest(t, nil, "registry.example.com/shop/web@"+digestA, "registry.example.com/shop/api@"+digestB, "bad ref!")
	var tr Trace
	traced := r.Review(WithTrace(context.Background(), &tr), "prod", req)
	plain := r.Review(context.Background(), "prod", req)
	if !reflect.DeepEqual(traced, plain) {
		t.Errorf("traced review %+v differs from %+v", traced, plain)
	}
	if tr.UnknownStage || len(tr.Deny) == 0 || len(tr.Images) != 3 {
		t.Fatalf("trace = %+v; want 3 images and denials", tr)
	}
	if im := tr.Images[0]; im.Digest != digestA || !im.Found || !im.State.Active() {
		t.Errorf("image 0 = %+v, want digest A, active", im)
	}
	if im := tr.Images[1]; im.Digest != digestB || !im.Found || !im.State.Revoked || im.State.RevokedBy != "sec" {
		t.Errorf("image 1 = %+v, want digest B, revoked by sec", im)
	}
	if im := tr.Images[2]; im.Error == "" || im.Digest != "" || im.Found {
		t.Errorf("image 2 = %+v, want an error", im)
	}

	var unknown Trace
	if resp := r.Review(WithTrace(context.Background(), &unknown), "qa", req); resp.Allowed || !unknown.UnknownStage {
		t.Errorf("unknown stage: allowed %v, trace %+v", resp.Allowed, unknown)
	}
}

// TestDryRunRequest checks the request continuous validation sends: a
// dry-run CREATE, so that a break-glass pod is admitted without a record.
func TestDryRunRequest(t *testing.T) {
	rec := &fakeRecorder{}
	pol := &fakePolicy{}
	r := NewReviewer(testStates(), pol, WithRecorder(rec))
	pod := podRequest(t, map[string]string{BreakGlassAnnotation: "INC-1"}, "registry.example.com/shop/web@"+digestD)
	req, err := DryRunRequest("uid-9", pod.Object.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if req.DryRun == nil || !*req.DryRun || req.Operation != "CREATE" || req.Namespace != "shop" || req.Resource.Resource != "pods" || req.UID != "uid-9" {
		t.Fatalf("DryRunRequest = %+v", req)
	}
	if _, err := DryRunRequest("x", json.RawMessage(`{"kind":"Pod"}`)); err == nil {
		t.Error("an object without apiVersion made a request")
	}
	pol.decide = func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
		return policy.AdmissionDecision{Deny: []string{"not promoted"}, BreakGlassAllowed: true}, nil
	}
	resp := r.Review(context.Background(), "prod", req)
	if !resp.Allowed || resp.AuditAnnotations[AuditBreakGlass] != "INC-1" {
		t.Errorf("break-glass dry run = %+v, want admitted by break-glass", resp)
	}
	if len(rec.got) != 0 {
		t.Errorf("a dry run recorded %d break-glass entries", len(rec.got))
	}
}
