package cli

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/stagegate/stagegate/internal/api"
	"github.com/stagegate/stagegate/internal/config"
)

// TestStages: `stagegate stages` against app.Build's server over TLS
// shows each stage in order with its groups, approvals and windows,
// whether it is open, its next change, and the pending request the
// pipeline opened during the freeze; in each -o form. The freeze spans
// centuries, so the real clock is inside it whenever the test runs.
func TestStages(t *testing.T) {
	srv := startTLSServer(t, []api.Token{{SHA256: api.HashToken("ci-token"), Subject: "ci", Groups: []string{"pipeline"}}},
		func(cfg *config.Config) {
			dev := &cfg.Stages[0]
			dev.Windows = []config.Window{{Deny: "long freeze", Start: "2000-01-01T00:00:00Z", End: "2999-01-01T00:00:00Z"}}
			dev.FreezeOverrideGroups = []string{"sre"}
			dev.Approvals = &config.Approvals{Required: 2, Groups: []string{"security"}}
		})
	_, stderr, err := srv.as("ci-token", "promote", srv.sample.Image, "--stage", "dev", "--reason", "build 7", "--progress", "none", "-o", "json")
	if err != nil || !strings.Contains(stderr, "pending") {
		t.Fatalf("request during the freeze: %v\n%s", err, stderr)
	}
	var id uint64
	if list, _, err := srv.app.Service.Requests(t.Context(), "dev", "pending", 0, 10); err != nil || len(list) != 1 {
		t.Fatalf("pending requests: %v, %v", list, err)
	} else {
		id = list[0].ID
	}

	checkJSON := func(t *testing.T, raw []byte) {
		var a struct{ Stages []stageView }
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("%v: %s", err, raw)
		}
		var names []string
		for _, s := range a.Stages {
			names = append(names, s.Name)
		}
		if !slices.Equal(names, []string{"dev", "test", "stage", "prod"}) {
			t.Fatalf("stages %v, want the pipeline order", names)
		}
		dev, prod := a.Stages[0], a.Stages[3]
		if dev.Open || dev.ClosedBy != "long freeze" || dev.NextChange == nil || !dev.NextChange.Equal(time.Date(2999, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("dev open=%v closedBy=%q next=%v, want closed by the long freeze until 2999", dev.Open, dev.ClosedBy, dev.NextChange)
		}
		if r := dev.ApprovalRule; r == nil || r.Required != 2 || !slices.Equal(r.Groups, []string{"security"}) || !r.ExcludeRequester || r.Expires != "72h0m0s" {
			t.Errorf("dev approvalRule = %+v", r)
		}
		if !slices.Equal(dev.Pending, []uint64{id}) || dev.PendingMore {
			t.Errorf("dev pending = %v (more %v), want [%d]", dev.Pending, dev.PendingMore, id)
		}
		if len(dev.Schedule) != 1 || !strings.Contains(dev.Schedule[0], "deny long freeze") || !slices.Equal(dev.FreezeOverrideGroups, []string{"sre"}) {
			t.Errorf("dev schedule %q, override %v", dev.Schedule, dev.FreezeOverrideGroups)
		}
		if !slices.Equal(dev.Groups, []string{"pipeline"}) || !slices.Equal(prod.Groups, []string{"release"}) {
			t.Errorf("groups: dev %v, prod %v", dev.Groups, prod.Groups)
		}
		if !prod.Open || prod.NextChange != nil || prod.ApprovalRule != nil || len(prod.Pending) != 0 || len(prod.Schedule) != 0 {
			t.Errorf("prod = %+v, want open for ever, no approvals, nothing pending", prod)
		}
	}
	tests := map[string]struct {
		args  []string
		check func(t *testing.T, out string)
	}{
		"json (not a terminal)": {nil, func(t *testing.T, out string) { checkJSON(t, []byte(out)) }},
		"-o json":               {[]string{"-o", "json"}, func(t *testing.T, out string) { checkJSON(t, []byte(out)) }},
		"-o yaml": {[]string{"-o", "yaml"}, func(t *testing.T, out string) {
			j, err := yaml.YAMLToJSON([]byte(out))
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			checkJSON(t, j)
		}},
		"-o table": {[]string{"-o", "table"}, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 5 || !strings.HasPrefix(lines[0], "ORDER") || !strings.Contains(lines[0], "NEXT CHANGE") {
				t.Fatalf("table:\n%s", out)
			}
			dev := strings.Join(strings.Fields(lines[1]), " ")
			for _, want := range []string{"0 dev pipeline", "2 of security, expires 72h0m0s, not the requester", "deny long freeze:",
				"override: sre", "no (long freeze)", "2999-01-01T00:00:00Z", " " + strconv.FormatUint(id, 10)} {
				if !strings.Contains(dev, want) {
					t.Errorf("dev row %q lacks %q", dev, want)
				}
			}
			if prod := strings.Join(strings.Fields(lines[4]), " "); prod != "3 prod release - - yes - -" {
				t.Errorf("prod row %q", prod)
			}
		}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			out, stderr, err := srv.as("ci-token", append([]string{"stages"}, tc.args...)...)
			if err != nil {
				t.Fatalf("stages: %v\n%s", err, stderr)
			}
			tc.check(t, out)
		})
	}
	t.Run("without a token", func(t *testing.T) {
		if _, _, err := srv.as("", "stages"); err == nil {
			t.Fatal("stages without a token succeeded")
		}
	})
}
