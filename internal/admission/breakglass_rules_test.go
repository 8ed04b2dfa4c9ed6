package admission

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestBreakGlassRules: breakGlassGroups is matched against the review's
// userInfo, and breakGlassMaxAge against the break-glass-at annotation on
// an injected clock. A break-glass that does not count is denied with
// what is wrong and records nothing; one that counts is recorded with the
// user and groups.
func TestBreakGlassRules(t *testing.T) {
	now := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	rules := map[string]BreakGlassRule{
		"groups":  {Restricted: true, Groups: []string{"sre", "oncall"}},
		"nobody":  {Restricted: true, Groups: []string{}},
		"aged":    {MaxAge: 4 * time.Hour},
		"both":    {Restricted: true, Groups: []string{"sre"}, MaxAge: time.Hour},
		"no rule": {},
	}
	at := func(d time.Duration) string { return now.Add(d).Format(time.RFC3339) }
	tests := map[string]struct {
		stage  string
		groups []string
		at     string // "" for no break-glass-at annotation
		want   []string
	}{
		"member of a group":           {stage: "groups", groups: []string{"devs", "oncall"}},
		"in no group":                 {stage: "groups", groups: []string{"devs"}, want: []string{`user "alice"`, "sre, oncall"}},
		"no groups at all":            {stage: "groups", want: []string{"none of", "sre, oncall"}},
		"empty group name":            {stage: "groups", groups: []string{""}, want: []string{"none of"}},
		"empty list: nobody":          {stage: "nobody", groups: []string{"sre"}, want: []string{"nobody may break glass"}},
		"fresh annotation":            {stage: "aged", at: at(-3 * time.Hour)},
		"just at the limit":           {stage: "aged", at: at(-4 * time.Hour)},
		"too old":                     {stage: "aged", at: at(-4*time.Hour - time.Second), want: []string{"4h0m1s old", "breakGlassMaxAge 4h0m0s"}},
		"weeks old":                   {stage: "aged", at: at(-21 * 24 * time.Hour), want: []string{"older than"}},
		"no time":                     {stage: "aged", want: []string{BreakGlassAtAnnotation, "RFC 3339", "at most 4h0m0s"}},
		"not a time":                  {stage: "aged", at: "yesterday", want: []string{`"yesterday" is not an RFC 3339 time`}},
		"far in the future":           {stage: "aged", at: at(24 * time.Hour), want: []string{"in the future"}},
		"slightly ahead (clock skew)": {stage: "aged", at: at(time.Minute)},
		"offset zone, fresh":          {stage: "aged", at: now.Add(-time.Hour).In(time.FixedZone("CEST", 2*3600)).Format(time.RFC3339)},
		"both rules met":              {stage: "both", groups: []string{"sre"}, at: at(-time.Minute)},
		"both: right group, too old":  {stage: "both", groups: []string{"sre"}, at: at(-2 * time.Hour), want: []string{"older than"}},
		"both: fresh, wrong group":    {stage: "both", groups: []string{"devs"}, at: at(0), want: []string{"none of"}},
		"stage without a rule":        {stage: "no rule"},
		"stage not in the rules":      {stage: "dev"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := &fakeRecorder{index: 3}
			r := NewReviewer(testStates(), breakGlassPolicy(), WithRecorder(rec), WithClock(func() time.Time { return now }),
				WithBreakGlassRules(rules))
			ann := map[string]string{BreakGlassAnnotation: "INC-1"}
			if tc.at != "" {
				ann[BreakGlassAtAnnotation] = tc.at
			}
			req := podRequest(t, ann, imgB)
			req.UserInfo.Groups = tc.groups
			resp := r.Review(context.Background(), tc.stage, req)
			if len(tc.want) == 0 {
				if !resp.Allowed || len(rec.got) != 1 {
					t.Fatalf("allowed %v with %d records, want admitted by break-glass and recorded: %+v", resp.Allowed, len(rec.got), resp.Result)
				}
				if got := rec.got[0]; got.User != "alice" || strings.Join(got.Groups, ",") != strings.Join(tc.groups, ",") {
					t.Errorf("recorded %s %v, want alice %v", got.User, got.Groups, tc.groups)
				}
				return
			}
			if resp.Allowed || resp.Result.Code != http.StatusForbidden {
				t.Fatalf("allowed %v (%+v), want 403", resp.Allowed, resp.Result)
			}
			for _, w := range append([]string{"shop/Pod/web", "not promoted", "does not count"}, tc.want...) {
				if !strings.Contains(resp.Result.Message, w) {
					t.Errorf("message %q does not say %q", resp.Result.Message, w)
				}
			}
			if len(rec.got) != 0 {
				t.Errorf("a break-glass that does not count was recorded: %+v", rec.got)
			}
		})
	}
}

// TestBreakGlassAtFromTheSamePlace: the time dates the annotation it sits
// beside. A template's justification is dated by the template's time, not
// by a fresh time on the Deployment itself.
func TestBreakGlassAtFromTheSamePlace(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	fresh, old := now.Add(-time.Minute).Format(time.RFC3339), now.Add(-30*24*time.Hour).Format(time.RFC3339)
	tests := map[string]struct {
		object, template map[string]string
		allowed          bool
	}{
		"both on the template, fresh": {template: map[string]string{BreakGlassAnnotation: "INC-1", BreakGlassAtAnnotation: fresh}, allowed: true},
		"both on the template, old":   {template: map[string]string{BreakGlassAnnotation: "INC-1", BreakGlassAtAnnotation: old}},
		"old template, fresh time on the object": {
			object:   map[string]string{BreakGlassAtAnnotation: fresh},
			template: map[string]string{BreakGlassAnnotation: "INC-1", BreakGlassAtAnnotation: old},
		},
		"both on the object": {object: map[string]string{BreakGlassAnnotation: "INC-2", BreakGlassAtAnnotation: fresh},
			template: map[string]string{BreakGlassAnnotation: "INC-1", BreakGlassAtAnnotation: old}, allowed: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			replicas := int32(1)
			d := appsv1.Deployment{
				TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
				ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Annotations: tc.object},
				Spec: appsv1.DeploymentSpec{Replicas: &replicas, Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Annotations: tc.template},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: imgB}}},
				}},
			}
			raw, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			r := NewReviewer(testStates(), breakGlassPolicy(), WithRecorder(&fakeRecorder{}), WithClock(func() time.Time { return now }),
				WithBreakGlassRules(map[string]BreakGlassRule{"prod": {MaxAge: 24 * time.Hour}}))
			resp := r.Review(context.Background(), "prod", requestFor(t, raw, admissionv1.Create, ""))
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
		})
	}
}
