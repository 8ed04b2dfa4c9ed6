package config

import (
	"slices"
	"strings"
	"testing"
)

// TestDutiesDefaults: revokeGroups defaults to the stage's promotion
// groups plus securityGroups, an explicit empty list means nobody, and
// overrideRevocationGroups defaults to revokeGroups.
func TestDutiesDefaults(t *testing.T) {
	c := Default()
	c.SecurityGroups = []string{"security", "release"}
	c.Stages = []Stage{
		{Name: "dev", Groups: []string{"pipeline"}},
		{Name: "test", Groups: []string{"pipeline"}, RevokeGroups: []string{}},
		{Name: "prod", Groups: []string{"release"}, RevokeGroups: []string{"sec"}, OverrideRevocationGroups: []string{"cab"}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		stage            string
		revoke, override []string
	}{
		"defaults":              {"dev", []string{"pipeline", "security", "release"}, []string{"pipeline", "security", "release"}},
		"explicitly nobody":     {"test", []string{}, []string{}},
		"both set":              {"prod", []string{"sec"}, []string{"cab"}},
		"unknown stage: nobody": {"qa", nil, nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := c.RevokeGroups(tc.stage); !slices.Equal(got, tc.revoke) {
				t.Errorf("RevokeGroups = %q, want %q", got, tc.revoke)
			}
			if got := c.OverrideRevocationGroups(tc.stage); !slices.Equal(got, tc.override) {
				t.Errorf("OverrideRevocationGroups = %q, want %q", got, tc.override)
			}
		})
	}
	st := c.PolicyData()["stage"].(map[string]any)["dev"].(map[string]any)
	if got := st["revokeGroups"].([]any); len(got) != 3 {
		t.Errorf("policy data revokeGroups = %v", got)
	}
}

// TestBreakGlassMaxAgeNotNegative: a negative age is refused.
func TestBreakGlassMaxAgeNotNegative(t *testing.T) {
	c := Default()
	c.Stages[0].BreakGlassMaxAge = Duration(-1)
	if err := c.Validate(); err == nil {
		t.Fatal("negative breakGlassMaxAge accepted")
	}
}

// TestBreakGlassGroupsWarning: breakGlassGroups without admission
// client-CA authentication is valid but warned about, naming the stage
// and the setting that fixes it.
func TestBreakGlassGroupsWarning(t *testing.T) {
	tests := map[string]struct {
		groups   []string
		clientCA string
		warn     bool
	}{
		"no breakGlassGroups":          {},
		"groups without a client CA":   {groups: []string{"sre"}, warn: true},
		"empty list without client CA": {groups: []string{}, warn: true},
		"groups with a client CA":      {groups: []string{"sre"}, clientCA: "ca.crt"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			c.Stages[2].BreakGlassGroups = tc.groups
			if tc.clientCA != "" {
				c.Admission.Listen, c.Admission.ClientCAFile = "127.0.0.1:9443", tc.clientCA
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			w := c.Warnings()
			if got := len(w) > 0; got != tc.warn {
				t.Fatalf("warnings = %q, want some: %v", w, tc.warn)
			}
			if tc.warn && (!strings.Contains(w[0], "stages stage ") || !strings.Contains(w[0], "admission.clientCAFile")) {
				t.Errorf("warning %q does not name the stage and admission.clientCAFile", w[0])
			}
		})
	}
}
