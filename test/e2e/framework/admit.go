package framework

import (
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// WantAllowed fails unless the API server accepted the request.
func WantAllowed(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: refused, want created: %v", what, err)
	}
}

// WantDenied fails unless stagegate's webhook refused the request (403,
// "denied the request") with a message holding every one of want.
func WantDenied(t testing.TB, what string, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: created, want refused by stagegate", what)
		return
	}
	msg := err.Error()
	if !apierrors.IsForbidden(err) || !strings.Contains(msg, "denied the request") {
		t.Errorf("%s: err = %v; want a webhook denial (403, \"denied the request\")", what, err)
		return
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("%s: message %q does not contain %q", what, msg, w)
		}
	}
}
