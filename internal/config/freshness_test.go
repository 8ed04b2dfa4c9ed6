package config

import (
	"slices"
	"strings"
	"testing"
)

func TestFreshness(t *testing.T) {
	const stages = `
stages:
- {name: dev, groups: [ci]}
- {name: prod, groups: [ci]%s}
`
	tests := map[string]struct {
		body      string
		wantErr   string // substring; "" for none
		wantFresh []string
	}{
		"a follower without lists is refused": {
			body:    "registrySource: {enabled: true, trustedKeys: [/k.pub]}" + stages,
			wantErr: "stages prod require a fresh registry source",
		},
		"with a list the last stage requires freshness": {
			body:      "registrySource: {enabled: true, trustedKeys: [/k.pub], revocationLists: [reg/x/revocations:latest]}" + stages,
			wantFresh: []string{"prod"},
		},
		"freshSource false opts out": {
			body:      "registrySource: {enabled: true, trustedKeys: [/k.pub]}" + strings.Replace(stages, "%s", ", freshSource: false", 1),
			wantFresh: []string{},
		},
		"no registry source needs no list": {
			body:      strings.TrimPrefix(stages, "\n"),
			wantFresh: []string{"prod"},
		},
		"a list without a tag": {
			body:    "registrySource: {enabled: true, trustedKeys: [/k.pub], revocationLists: [reg:5000/x/revocations]}" + stages,
			wantErr: `"reg:5000/x/revocations": want repository:tag`,
		},
		"maxAge below refresh": {
			body:    "registrySource: {enabled: true, trustedKeys: [/k.pub], revocationLists: [reg/x:l], refresh: 1m, maxAge: 30s}" + stages,
			wantErr: "must exceed registrySource.refresh",
		},
		"the publishing side": {
			body:      "revocationList: {reference: reg/x/revocations:latest, every: 1m}" + stages,
			wantFresh: []string{"prod"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			body := strings.Replace(tc.body, "%s", "", 1)
			c, err := Load(write(t, body))
			if err != nil {
				t.Fatal(err)
			}
			err = c.Validate()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Validate: %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.FreshStages(); !slices.Equal(got, tc.wantFresh) && (len(got) != 0 || len(tc.wantFresh) != 0) {
				t.Fatalf("FreshStages = %v, want %v", got, tc.wantFresh)
			}
		})
	}
}
