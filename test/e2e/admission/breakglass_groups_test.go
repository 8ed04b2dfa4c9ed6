package admission

import (
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/stagegate/stagegate/internal/ledger"
)

const breakGlassAtAnnotation = "stagegate.dev/break-glass-at"

// testBreakGlassGroups (issue 16): stage test lets only e2e-oncall break
// glass, with a break-glass-at at most an hour old. Two users the API
// server authenticates with their own client certificates (userInfo is
// the API server's, and the webhook takes reviews from the API server
// alone): the on-call engineer's break-glass is admitted and recorded
// under their name and groups; a developer's, an on-call one dated two
// days ago (a template edited long ago) and one without a time are each
// denied, saying why, and record nothing.
func (s *suite) testBreakGlassGroups(t *testing.T, img images) {
	ns := s.namespace(t, "test-breakglass", "test")
	oncall := s.api.AddUser(t, "olga", "e2e-oncall")
	developer := s.api.AddUser(t, "dave", "e2e-dev")
	emergency := func(name string, at string) *corev1.Pod {
		p := pod(ns, name, img.nowhere)
		p.Annotations = map[string]string{breakGlassAnnotation: "INC-16: " + name}
		if at != "" {
			p.Annotations[breakGlassAtAnnotation] = at
		}
		return p
	}
	now := time.Now().UTC()

	start := s.ledgerSize(t)
	wantAllowed(t, "on-call break-glass", create(t, oncall.Clientset, emergency("oncall", now.Format(time.RFC3339)), false))
	es := s.ledgerEntries(t, start)
	if len(es) != 1 || es[0].Kind != ledger.KindBreakGlass || es[0].Subject != "olga" || !slices.Contains(es[0].Groups, "e2e-oncall") ||
		es[0].Workload != ns+"/Pod/oncall" {
		t.Fatalf("ledger after the on-call break-glass = %+v, want one break-glass entry by olga in e2e-oncall", es)
	}

	for name, tc := range map[string]struct {
		pod  *corev1.Pod
		as   string
		want []string
	}{
		"developer":         {pod: emergency("developer", now.Format(time.RFC3339)), as: "dave", want: []string{`user "dave"`, "breakGlassGroups", "e2e-oncall"}},
		"two days old":      {pod: emergency("old", now.Add(-48*time.Hour).Format(time.RFC3339)), as: "olga", want: []string{"older than", "breakGlassMaxAge 1h0m0s"}},
		"without a time":    {pod: emergency("undated", ""), as: "olga", want: []string{breakGlassAtAnnotation, "RFC 3339"}},
		"in the far future": {pod: emergency("future", now.Add(30*24*time.Hour).Format(time.RFC3339)), as: "olga", want: []string{"in the future"}},
	} {
		t.Run(name, func(t *testing.T) {
			cs := oncall.Clientset
			if tc.as == "dave" {
				cs = developer.Clientset
			}
			before := s.ledgerSize(t)
			wantDenied(t, name, create(t, cs, tc.pod, false), append(notPromoted(img.nowhere, "test"), append([]string{"does not count"}, tc.want...)...)...)
			if after := s.ledgerSize(t); after != before {
				t.Errorf("ledger grew from %d to %d after a break-glass that does not count", before, after)
			}
		})
	}
}
