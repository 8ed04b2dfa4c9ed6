package cli

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
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
			// A GitOps object that deploys the digest says its kind.
			{Namespace: "flux", Name: "cfg", Kind: "OCIRepository", Owner: "OCIRepository/cfg", Stage: "prod", Containers: []string{"cfg"}},
		},
		RunningTotal: 5,
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
			{Namespace: "shop", Pod: "shop", Kind: "Application", Owner: "Application/shop", Stage: "test", Image: "registry.example/shop/cfg@" + digestA,
				Digest: digestA, Reason: "not promoted", Since: since},
		}, Next: "shop/Application/shop"},
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

// `stagegate report` follows the pages until --limit, passes the filters
// on, and hands the next page's --after over when it stops short.
func TestReportPages(t *testing.T) {
	var queries []string
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		queries = append(queries, r.URL.RawQuery)
		after := r.URL.Query().Get("after")
		page := violationsView{Violations: []violation{}}
		switch after {
		case "":
			page.Violations = append(page.Violations, violation{Namespace: "a", Pod: "p1", Stage: "prod", Reason: "revoked"})
			page.Next = "a/p1"
		case "a/p1":
			page.Violations = append(page.Violations, violation{Namespace: "b", Pod: "p2", Stage: "prod", Reason: "not promoted"})
			page.Next = "b/p2"
		default:
			page.Violations = append(page.Violations, violation{Namespace: "c", Pod: "p3", Stage: "prod", Reason: "denied"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(page)
	}))
	defer srv.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args        []string
		wantPods    string
		wantNext    string
		wantQueries string
	}{
		"every page": {args: []string{"--stage", "prod"}, wantPods: "a/p1 b/p2 c/p3",
			wantQueries: "limit=1000&stage=prod; after=a%2Fp1&limit=999&stage=prod; after=b%2Fp2&limit=998&stage=prod"},
		"stops at --limit": {args: []string{"--namespace", "a", "--limit", "2"}, wantPods: "a/p1 b/p2", wantNext: "b/p2",
			wantQueries: "limit=2&namespace=a; after=a%2Fp1&limit=1&namespace=a"},
	} {
		t.Run(name, func(t *testing.T) {
			queries = nil
			out, stderr, err := run(t, append([]string{"report", "--server", srv.URL, "--ca-file", ca, "-o", "json"}, tc.args...)...)
			if err != nil {
				t.Fatalf("report: %v\n%s", err, stderr)
			}
			var v violationsView
			mustUnmarshal(t, []byte(out), &v)
			var pods []string
			for _, x := range v.Violations {
				pods = append(pods, x.Namespace+"/"+x.Pod)
			}
			if got := strings.Join(pods, " "); got != tc.wantPods || v.Next != tc.wantNext {
				t.Errorf("pods %q next %q, want %q next %q", got, v.Next, tc.wantPods, tc.wantNext)
			}
			if got := strings.Join(queries, "; "); got != tc.wantQueries {
				t.Errorf("queries\n got %s\nwant %s", got, tc.wantQueries)
			}
		})
	}
	if _, _, err := run(t, "report", "--server", srv.URL, "--ca-file", ca, "--limit", "0"); err == nil || !strings.Contains(err.Error(), "--limit 0 must be at least 1") {
		t.Errorf("--limit 0: %v", err)
	}
}
