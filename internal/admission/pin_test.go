package admission

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/stagegate/stagegate/internal/policy"
)

func TestPin(t *testing.T) {
	podWith := func(containers, volumes string) []byte {
		return []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"shop"},"spec":{"containers":[` + containers + `],"volumes":[` + volumes + `]}}`)
	}
	tag := `{"name":"db","image":"registry.example.com/shop/db:15"}`
	pinned := `{"name":"web","image":"` + imgA + `"}`
	unknown := `{"name":"x","image":"registry.example.com/shop/unknown:1"}`
	tagVolume := `{"name":"data","image":{"reference":"registry.example.com/shop/db:15"}}`
	tests := map[string]struct {
		op      admissionv1.Operation
		obj     []byte
		old     []byte
		wantOps []jsonPatchOp
	}{
		"tags of containers and image volumes are pinned": {
			op: admissionv1.Create, obj: podWith(pinned+","+tag, tagVolume),
			wantOps: []jsonPatchOp{
				{Op: "replace", Path: "/spec/containers/1/image", Value: imgC + "@" + digestC},
				{Op: "replace", Path: "/spec/volumes/0/image/reference", Value: imgC + "@" + digestC},
			},
		},
		"a digest reference is left alone": {
			op: admissionv1.Create, obj: podWith(pinned, ""),
		},
		"a tag that does not resolve is left for the validating webhook": {
			op: admissionv1.Create, obj: podWith(unknown+","+tag, ""),
			wantOps: []jsonPatchOp{{Op: "replace", Path: "/spec/containers/1/image", Value: imgC + "@" + digestC}},
		},
		"an update pins only the images it changes": {
			op: admissionv1.Update, obj: podWith(tag+","+tag, ""), old: podWith(tag+","+pinned, ""),
			wantOps: []jsonPatchOp{{Op: "replace", Path: "/spec/containers/1/image", Value: imgC + "@" + digestC}},
		},
		"a template is pinned at its path": {
			op:      admissionv1.Create,
			obj:     []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"d","namespace":"shop"},"spec":{"template":{"spec":{"containers":[` + tag + `]}}}}`),
			wantOps: []jsonPatchOp{{Op: "replace", Path: "/spec/template/spec/containers/0/image", Value: imgC + "@" + digestC}},
		},
		"delete is not patched": {
			op: admissionv1.Delete, obj: podWith(tag, ""),
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := NewReviewer(testStates(), &fakePolicy{}, WithResolver(testResolver()))
			req := requestFor(t, tc.obj, tc.op, "")
			req.OldObject.Raw = tc.old
			resp := r.Pin(context.Background(), "prod", req)
			if !resp.Allowed || resp.UID != req.UID {
				t.Fatalf("Pin = %+v, want allowed with uid %q", resp, req.UID)
			}
			var ops []jsonPatchOp
			if resp.Patch != nil {
				if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
					t.Errorf("patch type = %v", resp.PatchType)
				}
				if err := json.Unmarshal(resp.Patch, &ops); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(ops, tc.wantOps) {
				t.Errorf("patch = %+v, want %+v", ops, tc.wantOps)
			}
		})
	}
}

// tarpit is a registry that accepts every request and never answers
// until the caller gives up.
type tarpit struct {
	mu    sync.Mutex
	calls int
}

func (p *tarpit) Digest(ctx context.Context, _ string) (string, error) {
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	<-ctx.Done()
	return "", ctx.Err()
}

// TestReviewDeadline: a review naming many tags on a registry that never
// answers ends at its own deadline with a refusal that names the cause,
// however long each registry call may take.
func TestReviewDeadline(t *testing.T) {
	var images []string
	for i := range 20 {
		images = append(images, "tarpit.example.com/app"+string(rune('a'+i))+":1")
	}
	pit := &tarpit{}
	pol := &fakePolicy{}
	r := NewReviewer(testStates(), pol, WithResolver(pit),
		WithResolverTimeout(time.Hour), WithReviewTimeout(50*time.Millisecond))
	resp := r.Review(context.Background(), "prod", podRequest(t, nil, images...))
	if resp.Allowed {
		t.Fatal("admitted images whose digest could not be learned")
	}
	if len(pol.last.Images) != len(images) {
		t.Fatalf("policy saw %d images, want %d", len(pol.last.Images), len(images))
	}
	for _, ci := range pol.last.Images {
		if !strings.Contains(ci.Error, "review deadline exceeded") {
			t.Errorf("image %s: error %q does not name the deadline", ci.Reference, ci.Error)
		}
	}
	pit.mu.Lock()
	defer pit.mu.Unlock()
	if pit.calls == 0 {
		t.Error("the registry was never asked")
	}
}

// TestReviewUnknownStage: the route for namespaces and objects whose stage
// label is no configured stage refuses what runs images, naming the known
// stages and the label, and lets the rest through.
func TestReviewUnknownStage(t *testing.T) {
	labelled := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"shop","labels":{"stagegate.dev/stage":"qa"}},"spec":{"containers":[{"name":"a","image":"` + imgA + `"}]}}`)
	tests := map[string]struct {
		obj         []byte
		op          admissionv1.Operation
		wantAllowed bool
		wantMsg     []string
	}{
		"pod in a mislabelled namespace": {
			obj: podRequestRaw(t, imgA), op: admissionv1.Create,
			wantMsg: []string{"shop/Pod/web", `stagegate.dev/stage label of namespace "shop"`, "known stages: dev, test, stage, prod"},
		},
		"pod with a mislabelled stage label": {
			obj: labelled, op: admissionv1.Create,
			wantMsg: []string{`unknown stage "qa" in its label stagegate.dev/stage`},
		},
		"configmap passes": {
			obj: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c","namespace":"shop"}}`), op: admissionv1.Create, wantAllowed: true,
		},
		"delete passes": {
			obj: podRequestRaw(t, imgA), op: admissionv1.Delete, wantAllowed: true,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			pol := &fakePolicy{decide: func(policy.AdmissionInput) (policy.AdmissionDecision, error) {
				return policy.AdmissionDecision{}, errors.New("the policy is not asked for an unknown stage")
			}}
			m := &fakeMetrics{}
			r := NewReviewer(testStates(), pol, WithStages([]string{"dev", "test", "stage", "prod"}), WithMetrics(m))
			resp := r.ReviewUnknownStage(context.Background(), requestFor(t, tc.obj, tc.op, ""))
			if resp.Allowed != tc.wantAllowed {
				t.Fatalf("Allowed = %v, want %v (%+v)", resp.Allowed, tc.wantAllowed, resp.Result)
			}
			if !tc.wantAllowed && resp.Result.Code != 403 {
				t.Errorf("code = %d, want 403", resp.Result.Code)
			}
			for _, s := range tc.wantMsg {
				if !strings.Contains(resp.Result.Message, s) {
					t.Errorf("message %q does not contain %q", resp.Result.Message, s)
				}
			}
			if pol.calls != 0 {
				t.Errorf("policy called %d times", pol.calls)
			}
			for _, g := range m.got {
				if !strings.HasPrefix(g, "unknown:") {
					t.Errorf("metric %q, want stage label unknown", g)
				}
			}
		})
	}
}

func podRequestRaw(t *testing.T, images ...string) []byte {
	t.Helper()
	return podRequest(t, nil, images...).Object.Raw
}
