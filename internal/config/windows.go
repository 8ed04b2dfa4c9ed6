package config

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/stagegate/stagegate/internal/windows"
)

// Window is one entry of a stage's windows: an allowed span or a denied
// one (a freeze), weekly on the wall clock of TimeZone (From, To: "Fri
// 16:00"), each firing of a 5-field cron schedule in TimeZone for a
// Duration on that wall clock (Cron: "0 16 * * 5", Duration: 64h), or
// one-off (Start, End: RFC 3339).
type Window struct {
	// Allow or Deny names the span ("office hours", "weekend freeze");
	// exactly one is set.
	Allow string `json:"allow,omitempty"`
	Deny  string `json:"deny,omitempty"`
	// TimeZone is an IANA zone, e.g. Europe/Berlin; a weekly span needs it.
	TimeZone string   `json:"timeZone,omitempty"`
	From     string   `json:"from,omitempty"`
	To       string   `json:"to,omitempty"`
	Start    string   `json:"start,omitempty"`
	End      string   `json:"end,omitempty"`
	Cron     string   `json:"cron,omitempty"`
	Duration Duration `json:"duration,omitempty"`
}

// Schedule is the stage's windows, parsed; a stage without windows, or an
// unknown one, is always open. Validate has checked them, so an error
// here means the config was not validated.
func (c *Config) Schedule(stage string) (windows.Schedule, error) {
	s, ok := c.Stage(stage)
	if !ok {
		return nil, nil
	}
	var out windows.Schedule
	var errs []error
	for i, w := range s.Windows {
		pw, err := w.parse()
		if err != nil {
			errs = append(errs, fmt.Errorf("stage %q: windows[%d]: %w", stage, i, err))
			continue
		}
		out = append(out, pw)
	}
	return out, errors.Join(errs...)
}

func (w Window) parse() (windows.Window, error) {
	var out windows.Window
	switch {
	case w.Allow != "" && w.Deny != "":
		return out, errors.New("set allow or deny, not both")
	case strings.TrimSpace(w.Allow) != "":
		out.Name = w.Allow
	case strings.TrimSpace(w.Deny) != "":
		out.Name, out.Deny = w.Deny, true
	default:
		return out, errors.New("set allow or deny to a name for the span, e.g. deny: weekend freeze")
	}
	weekly := w.From != "" || w.To != ""
	oneOff := w.Start != "" || w.End != ""
	byCron := w.Cron != "" || w.Duration != 0
	switch {
	case weekly && oneOff || weekly && byCron || oneOff && byCron:
		return out, errors.New("set one of from and to (weekly), cron and duration, or start and end (one-off)")
	case byCron:
		return w.parseCron(out)
	case weekly:
		if w.From == "" || w.To == "" {
			return out, errors.New("a weekly span needs both from and to, e.g. from: \"Fri 16:00\", to: \"Mon 08:00\"")
		}
		if w.TimeZone == "" {
			return out, errors.New("timeZone is required for a weekly span, e.g. Europe/Berlin or UTC")
		}
		loc, err := time.LoadLocation(w.TimeZone)
		if err != nil {
			return out, fmt.Errorf("timeZone %q is not a known IANA time zone: %w", w.TimeZone, err)
		}
		if out.From, err = windows.ParseWeekTime(w.From); err != nil {
			return out, fmt.Errorf("from: %w", err)
		}
		if out.To, err = windows.ParseWeekTime(w.To); err != nil {
			return out, fmt.Errorf("to: %w", err)
		}
		if out.From == out.To {
			return out, fmt.Errorf("from and to are both %s: the span would be empty", out.From)
		}
		out.Weekly, out.Loc = true, loc
	case oneOff:
		if w.TimeZone != "" {
			if _, err := time.LoadLocation(w.TimeZone); err != nil {
				return out, fmt.Errorf("timeZone %q is not a known IANA time zone: %w", w.TimeZone, err)
			}
		}
		var err error
		if out.Start, err = time.Parse(time.RFC3339, w.Start); err != nil {
			return out, fmt.Errorf("start %q is not RFC 3339 (2026-12-20T00:00:00+01:00)", w.Start)
		}
		if out.End, err = time.Parse(time.RFC3339, w.End); err != nil {
			return out, fmt.Errorf("end %q is not RFC 3339 (2027-01-04T00:00:00+01:00)", w.End)
		}
		if !out.End.After(out.Start) {
			return out, fmt.Errorf("end %s is not after start %s", w.End, w.Start)
		}
	default:
		return out, errors.New("set from and to (weekly), cron and duration, or start and end (one-off)")
	}
	return out, nil
}

func (w Window) parseCron(out windows.Window) (windows.Window, error) {
	if w.Cron == "" {
		return out, errors.New("cron: a span with a duration needs a cron schedule, e.g. cron: \"0 16 * * 5\"")
	}
	if d := w.Duration.Std(); d <= 0 || d > windows.MaxCronDuration {
		return out, fmt.Errorf("duration %s: a cron span needs a duration above 0 and at most %s (longer freezes are one-off: start and end), e.g. duration: 64h",
			d, windows.MaxCronDuration)
	}
	if w.TimeZone == "" {
		return out, errors.New("timeZone is required for a cron span, e.g. Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return out, fmt.Errorf("timeZone %q is not a known IANA time zone: %w", w.TimeZone, err)
	}
	if out.Cron, err = windows.ParseCron(w.Cron, loc); err != nil {
		return out, fmt.Errorf("cron: %w", err)
	}
	out.Duration, out.Loc = w.Duration.Std(), loc
	return out, nil
}

// validateWindows checks each stage's windows and freezeOverrideGroups.
func (c *Config) validateWindows() []error {
	var errs []error
	for _, s := range c.Stages {
		if _, err := c.Schedule(s.Name); err != nil {
			errs = append(errs, err)
		}
		for _, g := range s.FreezeOverrideGroups {
			if strings.TrimSpace(g) == "" {
				errs = append(errs, fmt.Errorf("stage %q: freezeOverrideGroups: a group name must not be empty", s.Name))
			}
		}
	}
	return errs
}
