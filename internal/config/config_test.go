package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func write(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadRegistryNativeSettings(t *testing.T) {
	c, err := Load(write(t, `
stages:
  - name: dev
  - name: prod
    groups: [release]
    attest: true
    tag: "{{repository}}:{{stage}}"
    target: registry.prod:5000/mirror
    requiredEvidence: ["https://slsa.dev/provenance/v1"]
evidenceKeys: [/keys/pipeline.pub]
registrySource: {enabled: true, trustedKeys: [/keys/a.pub], timeout: 1s, refresh: 5s, revocationLists: ["reg.example/stagegate/revocations:latest"], maxAge: 10m}
rateLimit: {perSecond: 5, burst: 10}
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	prod, _ := c.Stage("prod")
	if prod.StageTag() != "prod" || !prod.Attest {
		t.Fatalf("prod stage: %+v", prod)
	}
	if got := prod.TargetRepository("registry.dev:5000/team/app"); got != "registry.prod:5000/mirror/team/app" {
		t.Fatalf("target = %q", got)
	}
	if got := prod.TargetRepository("library/nginx"); got != "registry.prod:5000/mirror/library/nginx" {
		t.Fatalf("target of a Docker Hub name = %q", got)
	}
	if c.RegistrySource.Timeout.Std() != time.Second || c.RegistrySource.Refresh.Std() != 5*time.Second {
		t.Fatalf("registrySource: %+v", c.RegistrySource)
	}
	if c.Keys.CosignKey != filepath.Join("data", "keys", "cosign.key") || c.TokensFile != filepath.Join("data", "tokens.yaml") {
		t.Fatalf("derived paths: %q %q", c.Keys.CosignKey, c.TokensFile)
	}
	data := c.PolicyData()
	if st := data["stage"].(map[string]any)["prod"].(map[string]any); st["allowTags"] != false || st["breakGlass"] != false {
		t.Fatalf("last stage defaults in policy data: %v", st)
	}
}

func TestValidateRejects(t *testing.T) {
	tests := map[string]struct{ body, want string }{
		"unknown field":                           {"stages: [{name: dev}]\ncolour: red\n", "unknown field"},
		"bad stage name":                          {"stages: [{name: Prod}]\n", "DNS label"},
		"duplicate stage":                         {"stages: [{name: dev}, {name: dev}]\n", "defined twice"},
		"bad mode":                                {"stages: [{name: dev, mode: block}]\n", "enforce, warn or audit"},
		"evidence without keys":                   {"stages: [{name: dev, requiredEvidence: [x]}]\n", "evidenceKeys"},
		"source without keys":                     {"stages: [{name: dev}]\nregistrySource: {enabled: true}\n", "trustedKeys"},
		"tag with a repository":                   {"stages: [{name: dev, tag: \"other/repo:dev\"}]\n", "tag name"},
		"duration not a string":                   {"stages: [{name: dev, minSoak: 3600}]\n", "duration"},
		"review timeout beyond the API server's":  {"admission: {timeout: 30s}\n", "below 30s"},
		"negative image cap":                      {"admission: {maxImages: -1}\n", "maxImages"},
		"tag cache for a day":                     {"admission: {tagCacheTTL: 24h}\n", "tagCacheTTL"},
		"allow-list without hosts":                {"registryAllowList: true\n", "registryAllowList needs"},
		"registry wait beyond the write timeout":  {"registryTimeout: 40s\n", "registryTimeout"},
		"client CA without a listener of its own": {"admission: {clientCAFile: /ca.crt}\n", "admission.clientCAFile needs admission.listen"},
		"web session for two days":                {"ui: {sessionTTL: 48h}\n", "ui.sessionTTL"},
		"sources with a missing kubeconfig":       {"admission: {sources: {enabled: true, kubeconfig: /nonexistent/kubeconfig}}\n", "admission.sources.kubeconfig"},
		"sources with an unknown field":           {"admission: {sources: {enabled: true, namespaces: [a]}}\n", "unknown field"},
		"negative web session":                    {"ui: {sessionTTL: -1m}\n", "ui.sessionTTL"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, tc.body))
			if err == nil {
				err = c.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

func TestAdmissionSettings(t *testing.T) {
	tests := map[string]struct {
		body         string
		timeout, ttl time.Duration
		maxImages    int
	}{
		"defaults":            {body: "", timeout: 4 * time.Second, ttl: 30 * time.Second, maxImages: 64},
		"from file":           {body: "admission: {timeout: 2s, maxImages: 8, tagCacheTTL: 5s}\n", timeout: 2 * time.Second, ttl: 5 * time.Second, maxImages: 8},
		"zero is the default": {body: "admission: {timeout: 0s}\n", timeout: 4 * time.Second, ttl: 30 * time.Second, maxImages: 64},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, tc.body))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			a := c.Admission
			if a.Timeout.Std() != tc.timeout || a.TagCacheTTL.Std() != tc.ttl || a.MaxImages != tc.maxImages {
				t.Errorf("admission = %+v, want timeout %s, ttl %s, maxImages %d", a, tc.timeout, tc.ttl, tc.maxImages)
			}
		})
	}
}
