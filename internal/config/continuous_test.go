package config

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestContinuousValidation(t *testing.T) {
	kubeconfig := write(t, "apiVersion: v1\nkind: Config\n")
	for name, tc := range map[string]struct {
		file    string
		want    ContinuousValidation
		wantErr string
	}{
		"defaults, disabled": {
			file: "listen: 127.0.0.1:8443\n",
			want: ContinuousValidation{Sweep: Duration(DefaultSweep), Lease: Lease{
				Name: DefaultLeaseName, Namespace: DefaultLeaseNamespace, Duration: Duration(DefaultLeaseDuration),
				Renew: Duration(DefaultLeaseRenew), Retry: Duration(DefaultLeaseRetry)}, EvictRetry: Duration(DefaultEvictRetry)},
		},
		"enabled with a kubeconfig": {
			file: "continuousValidation: {enabled: true, kubeconfig: " + kubeconfig + ", sweep: 30s, evictRetry: 5s, lease: {name: inv, namespace: ops, duration: 30s, renew: 20s, retry: 5s}}\n",
			want: ContinuousValidation{Enabled: true, Kubeconfig: kubeconfig, Sweep: Duration(30 * time.Second), Lease: Lease{
				Name: "inv", Namespace: "ops", Duration: Duration(30 * time.Second), Renew: Duration(20 * time.Second), Retry: Duration(5 * time.Second)},
				EvictRetry: Duration(5 * time.Second)},
		},
		"evictRetry too short": {
			file:    "continuousValidation: {evictRetry: 100ms}\n",
			wantErr: "continuousValidation.evictRetry 100ms must be at least 1s",
		},
		"missing kubeconfig": {
			file:    "continuousValidation: {enabled: true, kubeconfig: " + filepath.Join(t.TempDir(), "none") + "}\n",
			wantErr: "continuousValidation.kubeconfig:",
		},
		"sweep too short": {
			file:    "continuousValidation: {sweep: 10ms}\n",
			wantErr: "continuousValidation.sweep 10ms must be at least 1s",
		},
		"renew not below duration": {
			file:    "continuousValidation: {lease: {duration: 10s, renew: 10s}}\n",
			wantErr: "continuousValidation.lease: need 0 < retry (2s) < renew (10s) < duration (10s)",
		},
		"bad lease namespace": {
			file:    "continuousValidation: {lease: {namespace: Ops_Team}}\n",
			wantErr: `continuousValidation.lease.namespace "Ops_Team" must be a DNS label`,
		},
		"unknown field": {
			file:    "continuousValidation: {sweeps: 1m}\n",
			wantErr: `unknown field "sweeps"`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, tc.file))
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.ContinuousValidation != tc.want {
				t.Fatalf("continuousValidation = %+v, want %+v", c.ContinuousValidation, tc.want)
			}
		})
	}
}

func TestOnViolation(t *testing.T) {
	for name, tc := range map[string]struct {
		stages    string
		wantEvict []string
		wantErr   string
	}{
		"default report": {
			stages: "- {name: dev}\n- {name: prod, onViolation: report}\n",
		},
		"evict in an enforced stage": {
			stages:    "- {name: dev}\n- {name: prod, onViolation: evict}\n",
			wantEvict: []string{"prod"},
		},
		"evict in warn mode": {
			stages:  "- {name: dev, mode: warn, onViolation: evict}\n- {name: prod}\n",
			wantErr: `stage "dev": onViolation evict needs mode enforce, not warn`,
		},
		"unknown action": {
			stages:  "- {name: dev, onViolation: delete}\n- {name: prod}\n",
			wantErr: `stage "dev": onViolation "delete" must be report or evict`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := Load(write(t, "stages:\n"+tc.stages))
			if err == nil {
				err = c.Validate()
			}
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := c.EvictStages(); !slices.Equal(got, tc.wantEvict) {
				t.Errorf("EvictStages() = %v, want %v", got, tc.wantEvict)
			}
		})
	}
}
