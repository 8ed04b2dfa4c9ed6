package policy

import (
	"context"
	"testing"
	"testing/fstest"
)

// The admission benchmarks below complement BenchmarkAdmission (3 pinned,
// promoted images: the common allowed pod). Each one checks the decision it
// measures, so that a policy change cannot make it fast by deciding wrongly.

func benchAdmission(b *testing.B, e *Engine, in AdmissionInput, check func(AdmissionDecision) bool) {
	b.Helper()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		d, err := e.Admission(ctx, in)
		if err != nil || !check(d) {
			b.Fatalf("Admission = %+v, %v", d, err)
		}
	}
}

// BenchmarkAdmissionTenContainers is an allowed pod with ten pinned,
// promoted images: the cost per image on the allowed path.
func BenchmarkAdmissionTenContainers(b *testing.B) {
	promoted := active("2025-06-01T00:00:00Z")
	var images []ContainerImage
	for _, name := range []string{"app", "sidecar", "proxy", "log", "metrics", "init-db", "init-cfg", "cache", "worker", "debug"} {
		images = append(images, containerImage(name, true, promoted))
	}
	benchAdmission(b, newTestEngine(b), admissionInput("prod", images...), func(d AdmissionDecision) bool {
		return len(d.Deny) == 0 && len(d.Warn) == 0
	})
}

// BenchmarkAdmissionDenied is a pod refused in prod: one image not promoted,
// one revoked, one referenced by tag, beside a good one.
func BenchmarkAdmissionDenied(b *testing.B) {
	promoted := active("2025-06-01T00:00:00Z")
	in := admissionInput("prod",
		containerImage("app", true, promoted),
		containerImage("sidecar", true, StageState{}),
		containerImage("proxy", true, StageState{Promoted: true, Revoked: true, RevokedAt: "2025-06-02T00:00:00Z", RevokedBy: "sec", Reason: "CVE-2025-1"}),
		containerImage("log", false, promoted),
	)
	benchAdmission(b, newTestEngine(b), in, func(d AdmissionDecision) bool {
		return len(d.Deny) == 3 && len(d.Warn) == 0
	})
}

// BenchmarkAdmissionTagWarned is an allowed pod in a stage that allows tags,
// with one of its three images referenced by tag: one warning.
func BenchmarkAdmissionTagWarned(b *testing.B) {
	promoted := active("2025-06-01T00:00:00Z")
	in := admissionInput("stage",
		containerImage("app", true, promoted),
		containerImage("sidecar", true, promoted),
		containerImage("proxy", false, promoted),
	)
	benchAdmission(b, newTestEngine(b), in, func(d AdmissionDecision) bool {
		return len(d.Deny) == 0 && len(d.Warn) == 1
	})
}

// BenchmarkAdmissionFloor evaluates a one-rule admission policy on the input
// of BenchmarkAdmission: the cost of the query, input and result handling,
// which no change to admission.rego can remove.
func BenchmarkAdmissionFloor(b *testing.B) {
	fsys := fstest.MapFS{
		"promotion.rego": {Data: []byte(minimalPolicy)},
		"admission.rego": {Data: []byte(minimalAdmission)},
	}
	e, err := New(context.Background(), fsys, testConfig())
	if err != nil {
		b.Fatal(err)
	}
	promoted := active("2025-06-01T00:00:00Z")
	in := admissionInput("test",
		containerImage("app", true, promoted),
		containerImage("sidecar", true, promoted),
		containerImage("proxy", true, promoted),
	)
	benchAdmission(b, e, in, func(d AdmissionDecision) bool { return len(d.Deny) == 0 })
}
