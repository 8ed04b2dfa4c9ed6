package config

import (
	"errors"
	"time"
)

// UI configures the web view served under /ui/.
type UI struct {
	// Disabled turns the web view off; the API is unchanged.
	Disabled bool `json:"disabled,omitempty"`
	// SessionTTL is a session's whole lifetime (default 1h): a person
	// signs in again with their token after it.
	SessionTTL Duration `json:"sessionTTL,omitempty"`
}

// DefaultSessionTTL is UI.SessionTTL's default.
const DefaultSessionTTL = time.Hour

// SessionLifetime is SessionTTL or its default.
func (u UI) SessionLifetime() time.Duration {
	if u.SessionTTL == 0 {
		return DefaultSessionTTL
	}
	return u.SessionTTL.Std()
}

func (u UI) validate() []error {
	// A session that outlives a working day outlives the reason to hold
	// one; a bearer token is what stays.
	if u.SessionTTL < 0 || u.SessionTTL.Std() > 24*time.Hour {
		return []error{errors.New("ui.sessionTTL must be between 0 (the default, 1h) and 24h")}
	}
	return nil
}
