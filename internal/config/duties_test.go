package config

import (
	"slices"
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
