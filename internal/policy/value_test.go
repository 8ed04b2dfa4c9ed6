package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/stagegate/stagegate/internal/testutil/golden"
)

var update = flag.Bool("update", false, "rewrite the golden decisions in testdata/")

// decodeStrict reads a testdata example into v, refusing unknown fields so
// that the documented examples cannot drift from the Go types.
func decodeStrict(t *testing.T, name string, v any) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
	return raw
}

func TestAdmissionValueMatchesJSON(t *testing.T) {
	var example AdmissionInput
	decodeStrict(t, "admission_input.json", &example)

	tests := map[string]AdmissionInput{
		"documented example": example,
		"zero":               {},
		"empty, not nil":     {User: Identity{Groups: []string{}}, Images: []ContainerImage{}, Workload: Workload{Labels: map[string]string{}}},
		"optional fields set": {
			SubResource: "ephemeralcontainers",
			DryRun:      true,
			User:        Identity{Subject: "u", Method: "mtls"},
			Images:      []ContainerImage{{Container: "c", Type: "ephemeralContainer", Pinned: true, State: StageState{Revoked: true, Reason: "r"}}},
		},
	}
	for name, in := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(bytes.NewReader(raw))
			if err != nil {
				t.Fatal(err)
			}
			if got := admissionValue(&in); got.Compare(want) != 0 {
				t.Errorf("admissionValue:\n got %v\nwant %v", got, want)
			}
		})
	}
}

// TestDocumentedExamples evaluates the input examples shown in
// policies/README.md against the default policies and compares the decisions
// with golden files (go test -run TestDocumentedExamples -update).
func TestDocumentedExamples(t *testing.T) {
	e := newTestEngine(t)
	readme, err := os.ReadFile(filepath.Join("..", "..", "policies", "README.md"))
	if err != nil {
		t.Fatal(err)
	}

	tests := map[string]struct {
		input  string
		decide func(raw []byte) (any, error)
	}{
		"promotion": {
			input: "promotion_input.json",
			decide: func([]byte) (any, error) {
				var in PromotionInput
				decodeStrict(t, "promotion_input.json", &in)
				deny, err := e.Promotion(context.Background(), in)
				return map[string]any{"deny": deny}, err
			},
		},
		"admission": {
			input: "admission_input.json",
			decide: func([]byte) (any, error) {
				var in AdmissionInput
				decodeStrict(t, "admission_input.json", &in)
				return e.Admission(context.Background(), in)
			},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("testdata", tt.input))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(readme, bytes.TrimSpace(raw)) {
				t.Errorf("policies/README.md does not show testdata/%s verbatim", tt.input)
			}
			decision, err := tt.decide(raw)
			if err != nil {
				t.Fatal(err)
			}
			got, err := json.MarshalIndent(decision, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden.Assert(t, filepath.Join("testdata", strings.TrimSuffix(tt.input, "_input.json")+"_decision.golden.json"), got, *update)
		})
	}
}

func BenchmarkAdmission(b *testing.B) {
	e := newTestEngine(b)
	promoted := active("2025-06-01T00:00:00Z")
	in := admissionInput("prod",
		containerImage("app", true, promoted),
		containerImage("sidecar", true, promoted),
		containerImage("proxy", true, promoted),
	)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Admission(ctx, in)
		if err != nil || len(d.Deny) != 0 {
			b.Fatalf("Admission = %+v, %v", d, err)
		}
	}
}

func BenchmarkAdmissionValue(b *testing.B) {
	promoted := active("2025-06-01T00:00:00Z")
	in := admissionInput("prod",
		containerImage("app", true, promoted),
		containerImage("sidecar", true, promoted),
		containerImage("proxy", true, promoted),
	)
	b.ReportAllocs()
	for b.Loop() {
		_ = admissionValue(&in)
	}
}
