package registry

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Errors returned by this package. Callers map them to HTTP statuses: a bad
// reference is the user's to fix (400), a host outside the allow-list is
// refused (403), a missing image is 404, a registry that did not answer in
// time is 504, anything else that kept us from asking the registry is 502.
//
// No error of this package carries text the registry sent: they are
// shown to requesters (API answers, admission denials) and logged, and a
// registry's answer, or the answer of whatever it redirected to, is not
// ours to repeat. They keep the status code and the registry's error codes.
var (
	// ErrInvalidReference means the image reference does not parse.
	ErrInvalidReference = errors.New("invalid image reference")
	// ErrNotFound means the registry answered that the image does not exist.
	ErrNotFound = errors.New("image not found in registry")
	// ErrUnauthorized means the registry refused our credentials.
	ErrUnauthorized = errors.New("registry refused the credentials")
	// ErrUnreachable means the registry could not be asked.
	ErrUnreachable = errors.New("registry unreachable")
	// ErrHostNotAllowed means registryAllowList is on and the host (of a
	// reference, a redirect or a token realm) is not in registries. It
	// comes as a *HostNotAllowedError.
	ErrHostNotAllowed = errors.New("registry host not allowed")
	// ErrTimeout means a registry did not answer in time. It comes as a
	// *TimeoutError, which is also ErrUnreachable.
	ErrTimeout = errors.New("registry did not answer in time")
)

// HostNotAllowedError is a request refused before any network I/O because
// its host is not in the allow-list.
type HostNotAllowedError struct {
	Host string
	// RedirectedFrom is the host whose redirect led here, if any.
	RedirectedFrom string
}

func (e *HostNotAllowedError) Error() string {
	if e.RedirectedFrom != "" {
		return fmt.Sprintf("registry %s redirected to %s, which is not allowed: registryAllowList is on and %s is not in registries", e.RedirectedFrom, e.Host, e.Host)
	}
	return fmt.Sprintf("registry %s is not allowed: registryAllowList is on and %s is not in registries", e.Host, e.Host)
}

func (e *HostNotAllowedError) Unwrap() error { return ErrHostNotAllowed }

// TimeoutError is a registry that did not answer within After.
type TimeoutError struct {
	Host  string
	After time.Duration
}

func (e *TimeoutError) Error() string {
	if e.After <= 0 {
		return fmt.Sprintf("registry %s did not answer in time", e.Host)
	}
	return fmt.Sprintf("registry %s did not answer within %s", e.Host, e.After)
}

func (e *TimeoutError) Unwrap() []error { return []error{ErrTimeout, ErrUnreachable} }

// Error is a failed registry operation, as reported outside this package:
// Kind is ErrNotFound, ErrUnauthorized or ErrUnreachable; Status and Codes
// are what the registry answered (0 and none when it did not), and Reason
// is stagegate's own words for what went wrong, never the registry's.
type Error struct {
	Kind     error
	Registry string
	// Ref is the reference asked for, when the error is about it.
	Ref    string
	Status int
	Codes  []string
	Reason string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	b.WriteString(": ")
	if e.Ref != "" {
		b.WriteString(e.Ref)
	} else {
		b.WriteString("registry " + e.Registry)
	}
	if e.Status != 0 {
		fmt.Fprintf(&b, ": registry answered %d", e.Status)
		if len(e.Codes) > 0 {
			b.WriteString(" " + strings.Join(e.Codes, ", "))
		}
	}
	if e.Reason != "" {
		b.WriteString(": " + e.Reason)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Kind }
