package cli

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/stagegate/stagegate/internal/testutil/golden"
)

func sampleRunning() runningView {
	return runningView{
		Running: []runningPod{
			{Namespace: "shop", Name: "app-5d8f-x2k9", Owner: "ReplicaSet/app-5d8f", Stage: "prod", Containers: []string{"app"}},
			{Namespace: "shop", Name: "debug", Owner: "Pod/debug", Stage: "prod", Containers: []string{"init", "side"}},
			{Namespace: "tools", Name: "loose", Owner: "Pod/loose", Containers: []string{"app"}},
		},
		RunningTotal: 4,
	}
}

// The image status tells where the digest runs, what it could not list,
// or why it cannot know; an older server's answer shows no such section.
func TestStatusRunning(t *testing.T) {
	_, status := sampleAnswers(t)
	stages := []string{"dev", "test", "stage", "prod"}
	for name, rv := range map[string]runningView{
		"status-running.table": sampleRunning(),
		"status-nowhere.table": {Running: []runningPod{}},
		"status-unknown.table": {Running: []runningPod{}, RunningUnknown: "continuous validation is off (continuousValidation.enabled), so stagegate does not know what runs"},
	} {
		t.Run(name, func(t *testing.T) {
			var v statusView
			mustUnmarshal(t, status, &v)
			v.runningView = rv
			var out bytes.Buffer
			if err := printAnswer(Streams{Out: &out}, outputTable, mustJSON(t, v), statusTable(mustJSON(t, v), stages)); err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, filepath.Join("testdata", name), out.Bytes(), *update)
		})
	}
}

// A revocation says how many running pods it affects and lists some.
func TestPrintAffected(t *testing.T) {
	receipt, _ := sampleAnswers(t)
	for name, rv := range map[string]*runningView{
		"revoke-affected.txt": ptr(sampleRunning()),
		"revoke-none.txt":     {Running: []runningPod{}},
		"revoke-unknown.txt":  {Running: []runningPod{}, RunningUnknown: "the inventory of running pods is not synced with the cluster yet (or lost its watch); ask again"},
		"revoke-old.txt":      nil,
	} {
		t.Run(name, func(t *testing.T) {
			raw := receipt
			if rv != nil {
				var m map[string]any
				mustUnmarshal(t, receipt, &m)
				var extra map[string]any
				mustUnmarshal(t, mustJSON(t, rv), &extra)
				for k, v := range extra {
					m[k] = v
				}
				raw = mustJSON(t, m)
			}
			var out bytes.Buffer
			printAffected(&out, raw)
			golden.Assert(t, filepath.Join("testdata", name), out.Bytes(), *update)
		})
	}
}

func TestReportTable(t *testing.T) {
	idx := uint64(7)
	since := time.Date(2026, 12, 2, 16, 33, 41, 0, time.UTC)
	for name, v := range map[string]violationsView{
		"report.table": {Violations: []violation{
			{Namespace: "shop", Pod: "app-5d8f-x2k9", Owner: "ReplicaSet/app-5d8f", Stage: "prod", Image: "registry.example/shop/app@" + digestA,
				Digest: digestA, Reason: "revoked", LedgerIndex: &idx, Since: since},
			{Namespace: "shop", Pod: "glass", Owner: "Pod/glass", Stage: "test", Image: "registry.example/shop/app:hotfix", Reason: "break-glass", Since: since},
		}, Next: "shop/glass"},
		"report-empty.table": {Violations: []violation{}},
	} {
		t.Run(name, func(t *testing.T) {
			var out bytes.Buffer
			raw := mustJSON(t, v)
			if err := printAnswer(Streams{Out: &out}, outputTable, raw, reportTable(raw)); err != nil {
				t.Fatal(err)
			}
			golden.Assert(t, filepath.Join("testdata", name), out.Bytes(), *update)
		})
	}
}

func ptr[T any](v T) *T { return &v }

func mustUnmarshal(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}
