package admission

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stagegate/stagegate/internal/policy"
	"github.com/stagegate/stagegate/internal/testutil/golden"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

func TestCheck(t *testing.T) {
	pol := &fakePolicy{}
	pol.decide = func(in policy.AdmissionInput) (policy.AdmissionDecision, error) {
		var d policy.AdmissionDecision
		for _, ci := range in.Images {
			if !ci.State.Promoted || ci.State.Revoked {
				d.Deny = append(d.Deny, "image "+ci.Reference+" is not active in "+in.Stage)
			}
		}
		d.BreakGlassAllowed = in.Workload.Kind == "Pod"
		if !in.DryRun {
			d.Deny = append(d.Deny, "check must be a dry run")
		}
		return d, nil
	}
	rec := &fakeRecorder{}
	r := NewReviewer(testStates(), pol, WithRecorder(rec))
	f, err := os.Open(filepath.Join("testdata", "check-manifest.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	got, err := r.Check(context.Background(), "prod", f)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.got) != 0 {
		t.Errorf("check recorded %d break-glass entries", len(rec.got))
	}
	out, err := json.MarshalIndent(got, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, filepath.Join("testdata", "check-manifest.golden.json"), append(out, '\n'), *update)
	// The golden file is only as good as these facts.
	allowed := map[string]bool{}
	for _, res := range got {
		allowed[res.Kind+"/"+res.Name] = res.Allowed
	}
	wantAllowed := map[string]bool{"Service/web": true, "Deployment/web": true, "Job/migrate-": false, "Pod/hotfix": true, "ConfigMap/cfg": true,
		"Rollout/canary": false, "Pod/models": false}
	if len(got) != len(wantAllowed) {
		t.Errorf("got %d results, want %d", len(got), len(wantAllowed))
	}
	for k, v := range wantAllowed {
		if a, ok := allowed[k]; !ok || a != v {
			t.Errorf("%s: allowed = %v (present %v), want %v", k, a, ok, v)
		}
	}
}

func TestCheckMalformed(t *testing.T) {
	tests := map[string]string{
		"bad yaml":       "apiVersion: v1\nkind: [Pod\n",
		"no kind":        "apiVersion: v1\nmetadata: {name: x}\n",
		"bad apiVersion": "apiVersion: a/b/c\nkind: Pod\n",
		"bad pod spec":   "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: 3}\n",
	}
	r := NewReviewer(testStates(), &fakePolicy{})
	for name, manifest := range tests {
		t.Run(name, func(t *testing.T) {
			res, err := r.Check(context.Background(), "prod", strings.NewReader(manifest))
			if name == "bad pod spec" {
				// The webhook would fail closed on it; so does the what-if.
				if err != nil || len(res) != 1 || res[0].Allowed || !strings.Contains(res[0].Message, "cannot decode") {
					t.Fatalf("Check = %+v, %v; want one refused result", res, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check = %+v, want an error", res)
			}
			if name != "bad yaml" && !errors.Is(err, ErrDecode) {
				t.Errorf("err = %v, want ErrDecode", err)
			}
		})
	}
}
