package admission

import (
	"fmt"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// BreakGlassAtAnnotation is the time, RFC 3339, at which the break-glass
// annotation was set. A stage with breakGlassMaxAge counts a break-glass
// only while this time is that recent, so that an annotation left in a pod
// template does not admit new pods weeks later.
const BreakGlassAtAnnotation = "stagegate.dev/break-glass-at"

// breakGlassSkew is how far in the future a break-glass-at time may be:
// the clocks of whoever wrote it and of stagegate differ a little. More,
// and the annotation could be made to count for as long as one likes.
const breakGlassSkew = 5 * time.Minute

// BreakGlassRule restricts break-glass in one stage, beyond the policy's
// break_glass_allowed, which still has to allow it.
type BreakGlassRule struct {
	// Restricted makes Groups apply; otherwise anyone may (as before
	// breakGlassGroups existed).
	Restricted bool
	// Groups are the groups of the AdmissionReview's userInfo that may
	// break glass; empty, nobody. userInfo is only as trustworthy as the
	// webhook's callers: require the API server's client certificate
	// (admission.clientCAFile) when setting this.
	Groups []string
	// MaxAge, when positive, is how old the break-glass-at annotation may
	// be; without that annotation the break-glass does not count.
	MaxAge time.Duration
}

// WithBreakGlassRules sets the break-glass rules of each stage; a stage
// without one only needs the policy's break_glass_allowed.
func WithBreakGlassRules(rules map[string]BreakGlassRule) Option {
	return func(o *options) {
		o.glassRules = make(map[string]BreakGlassRule, len(rules))
		for k, v := range rules {
			v.Groups = slices.Clone(v.Groups)
			o.glassRules[k] = v
		}
	}
}

// breakGlassRefusal says why w's break-glass does not count in stage under
// the stage's rule, or "" when it does.
func (r *Reviewer) breakGlassRefusal(stage string, req *admissionv1.AdmissionRequest, w workloadInfo) string {
	rule, ok := r.glassRules[stage]
	if !ok {
		return ""
	}
	if rule.Restricted && !slices.ContainsFunc(req.UserInfo.Groups, func(g string) bool { return g != "" && slices.Contains(rule.Groups, g) }) {
		who := "nobody may break glass here"
		if len(rule.Groups) > 0 {
			who = "only groups " + strings.Join(rule.Groups, ", ") + " may break glass here"
		}
		return fmt.Sprintf("user %q is in none of stage %q's breakGlassGroups: %s", req.UserInfo.Username, stage, who)
	}
	if rule.MaxAge <= 0 {
		return ""
	}
	if w.BreakGlassAt == "" {
		return fmt.Sprintf("stage %q counts a break-glass only with a %s annotation (RFC 3339, e.g. %s) at most %s old",
			stage, BreakGlassAtAnnotation, r.glass.now().UTC().Format(time.RFC3339), rule.MaxAge)
	}
	at, err := time.Parse(time.RFC3339, w.BreakGlassAt)
	if err != nil {
		return fmt.Sprintf("%s %.40q is not an RFC 3339 time such as %s", BreakGlassAtAnnotation, w.BreakGlassAt, r.glass.now().UTC().Format(time.RFC3339))
	}
	now := r.glass.now()
	if at.After(now.Add(breakGlassSkew)) {
		return fmt.Sprintf("%s %s is in the future (now %s)", BreakGlassAtAnnotation, w.BreakGlassAt, now.UTC().Format(time.RFC3339))
	}
	if age := now.Sub(at); age > rule.MaxAge {
		return fmt.Sprintf("%s %s is %s old, older than stage %q's breakGlassMaxAge %s: an old annotation (say, in a pod template) no longer counts; set both annotations again for this emergency",
			BreakGlassAtAnnotation, w.BreakGlassAt, age.Truncate(time.Second), stage, rule.MaxAge)
	}
	return ""
}
