package config

import (
	"strings"
	"testing"
	"time"
)

// TestApprovalsValidate: approvals get their defaults (excludeRequester
// true, expires 72h) and each bad setting is refused naming it.
func TestApprovalsValidate(t *testing.T) {
	tests := map[string]struct {
		a      Approvals
		target string
		want   string // "" for valid
	}{
		"defaults":          {a: Approvals{Required: 2, Groups: []string{"release"}}},
		"none required":     {a: Approvals{Groups: []string{"release"}}, want: "approvals.required 0"},
		"too many required": {a: Approvals{Required: 17, Groups: []string{"release"}}, want: "approvals.required 17"},
		"no groups":         {a: Approvals{Required: 1}, want: "approvals.groups must name"},
		"empty group":       {a: Approvals{Required: 1, Groups: []string{" "}}, want: "group name must not be empty"},
		"negative expiry":   {a: Approvals{Required: 1, Groups: []string{"r"}, Expires: Duration(-time.Hour)}, want: "approvals.expires"},
		"expiry beyond 30d": {a: Approvals{Required: 1, Groups: []string{"r"}, Expires: Duration(31 * 24 * time.Hour)}, want: "approvals.expires"},
		"with a target":     {a: Approvals{Required: 1, Groups: []string{"r"}}, target: "reg.example/mirror", want: "not supported yet"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			a := tc.a
			c.Stages[3].Approvals, c.Stages[3].Target = &a, tc.target
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if !a.ExcludesRequester() || a.Expires.Std() != DefaultApprovalsExpire {
					t.Errorf("defaults not filled in: %+v", a)
				}
				ap := c.PolicyData()["stage"].(map[string]any)["prod"].(map[string]any)["approvals"].(map[string]any)
				if ap["required"] != int64(2) || ap["excludeRequester"] != true || ap["expiresSeconds"] != int64(72*3600) {
					t.Errorf("policy data approvals = %v", ap)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `stage "prod"`) {
				t.Fatalf("err = %v, want one naming stage prod and %q", err, tc.want)
			}
		})
	}
}
