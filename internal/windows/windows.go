// Package windows decides whether a stage is open for promotions at a
// moment: a schedule of allowed and denied spans, weekly in a time zone or
// one-off, and when that changes next. It is pure: the caller brings the
// clock.
package windows

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Window is one span of a schedule: weekly (From, To in Loc), cron (each
// firing of Cron in Loc, for Duration; cron.go) or one-off (Start, End).
// Spans include their start and exclude their end.
type Window struct {
	// Deny makes the span a freeze; otherwise it is an allowed span.
	Deny bool
	// Name says what the span is for ("weekend freeze"); messages show it.
	Name string
	// Weekly spans: From and To are moments of the week on the wall
	// clock of Loc, so that "Fri 16:00" stays 16:00 across a DST change.
	Weekly   bool
	From, To WeekTime
	Loc      *time.Location
	// Cron spans: Cron set (ParseCron), Duration > 0, Loc.
	Cron     Cron
	Duration time.Duration
	// One-off spans.
	Start, End time.Time
}

// WeekTime is a moment of the week on a wall clock.
type WeekTime struct {
	Day          time.Weekday
	Hour, Minute int
}

func (w WeekTime) minutes() int { return int(w.Day)*24*60 + w.Hour*60 + w.Minute }

// String is the form ParseWeekTime reads.
func (w WeekTime) String() string {
	return fmt.Sprintf("%s %02d:%02d", w.Day.String()[:3], w.Hour, w.Minute)
}

// ErrSyntax is what ParseWeekTime's errors wrap.
var ErrSyntax = errors.New("not a weekday and time like \"Fri 16:00\"")

// ParseWeekTime reads "Fri 16:00": a three-letter English weekday and a
// 24-hour time.
func ParseWeekTime(s string) (WeekTime, error) {
	day, clock, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok {
		return WeekTime{}, fmt.Errorf("%q: %w", s, ErrSyntax)
	}
	var w WeekTime
	found := false
	for d := time.Sunday; d <= time.Saturday; d++ {
		if strings.EqualFold(day, d.String()[:3]) {
			w.Day, found = d, true
		}
	}
	if !found {
		return WeekTime{}, fmt.Errorf("%q: weekday %q is not one of Mon Tue Wed Thu Fri Sat Sun: %w", s, day, ErrSyntax)
	}
	hh, mm, ok := strings.Cut(strings.TrimSpace(clock), ":")
	h, herr := strconv.Atoi(hh)
	m, merr := strconv.Atoi(mm)
	if !ok || herr != nil || merr != nil || len(mm) != 2 || h < 0 || h > 23 || m < 0 || m > 59 {
		return WeekTime{}, fmt.Errorf("%q: time %q is not HH:MM between 00:00 and 23:59: %w", s, clock, ErrSyntax)
	}
	w.Hour, w.Minute = h, m
	return w, nil
}

// contains reports whether t falls in the span. A weekly span holds t
// when the last of its boundaries at or before t is a start: the same
// instants boundaries computes, so that Open's next change and contains
// agree even on the days DST skips or repeats an hour.
func (w Window) contains(t time.Time) bool {
	if w.Cron.schedule != nil {
		return w.cronContains(t)
	}
	if !w.Weekly {
		return !t.Before(w.Start) && t.Before(w.End)
	}
	var last time.Time
	in := false
	for _, b := range w.weekly(t.Add(-8*24*time.Hour), t) {
		// At equal instants (two wall times the skipped hour maps to one
		// moment) the end wins: the span is empty.
		if b.at.After(last) || b.at.Equal(last) && !b.start {
			last, in = b.at, b.start
		}
	}
	return in
}

type boundary struct {
	at    time.Time
	start bool
}

// weekly are the starts and ends of a weekly span in (after, until].
func (w Window) weekly(after, until time.Time) []boundary {
	var out []boundary
	l := after.In(w.Loc)
	for d := -1; d <= int(until.Sub(after)/(24*time.Hour))+1; d++ {
		day := time.Date(l.Year(), l.Month(), l.Day()+d, 12, 0, 0, 0, w.Loc)
		for i, wt := range []WeekTime{w.From, w.To} {
			if day.Weekday() != wt.Day {
				continue
			}
			// A wall time the clock repeats (DST ends) is the moment Go's
			// time.Date picks, the second one.
			b := time.Date(day.Year(), day.Month(), day.Day(), wt.Hour, wt.Minute, 0, 0, w.Loc)
			if b.Hour() != wt.Hour || b.Minute() != wt.Minute {
				// The wall clock skips this time (DST starts): the span
				// changes at the first moment after it, when the clock jumps.
				b, _ = b.ZoneBounds()
			}
			if b.After(after) && !b.After(until) {
				out = append(out, boundary{at: b, start: i == 0})
			}
		}
	}
	return out
}

// boundaries are the moments in (after, until] at which w starts or ends.
func (w Window) boundaries(after, until time.Time) []time.Time {
	if w.Cron.schedule != nil {
		return w.cronBoundaries(after, until)
	}
	if !w.Weekly {
		var out []time.Time
		for _, b := range []time.Time{w.Start, w.End} {
			if b.After(after) && !b.After(until) {
				out = append(out, b)
			}
		}
		return out
	}
	var out []time.Time
	for _, b := range w.weekly(after, until) {
		out = append(out, b.at)
	}
	return out
}

// Schedule is a stage's windows. Empty, the stage is always open.
type Schedule []Window

// Open reports whether t falls inside an allowed span (or the schedule
// has none) and inside no denied one, and the next moment after t at which
// that changes; next is zero when it never changes again.
func (s Schedule) Open(t time.Time) (open bool, next time.Time) {
	if s.hasCron() {
		return s.openWalk(t)
	}
	open = s.open(t)
	// The answer changes only at a boundary. One-off boundaries are few;
	// between two of them the weekly spans repeat every week, so if nothing
	// changes within eight days of one anchor (t or a one-off boundary),
	// nothing changes before the next anchor.
	anchors := []time.Time{t}
	for _, w := range s {
		if !w.Weekly {
			anchors = append(anchors, w.boundaries(t, maxTime)...)
		}
	}
	var cands []time.Time
	for _, a := range anchors {
		cands = append(cands, a)
		for _, w := range s {
			if w.Weekly {
				cands = append(cands, w.boundaries(a, a.Add(8*24*time.Hour))...)
			}
		}
	}
	slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
	for _, c := range cands {
		if c.After(t) && s.open(c) != open {
			return open, c
		}
	}
	return open, time.Time{}
}

// Closing is the span that keeps t closed: the denied span that holds it,
// or, outside every allowed span, nil with ok true. ok is false when t is
// open.
func (s Schedule) Closing(t time.Time) (w *Window, ok bool) {
	for i := range s {
		if s[i].Deny && s[i].contains(t) {
			return &s[i], true
		}
	}
	if s.open(t) {
		return nil, false
	}
	return nil, true
}

var maxTime = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)

func (s Schedule) open(t time.Time) bool {
	allowed, anyAllow := false, false
	for _, w := range s {
		if w.Deny {
			if w.contains(t) {
				return false
			}
			continue
		}
		anyAllow = true
		allowed = allowed || w.contains(t)
	}
	return allowed || !anyAllow
}

// String says what the span is, as `stagegate stages` shows it: "deny
// weekend freeze: Fri 16:00 to Mon 08:00 Europe/Berlin".
func (w Window) String() string {
	kind := "allow"
	if w.Deny {
		kind = "deny"
	}
	if w.Weekly {
		return fmt.Sprintf("%s %s: %s to %s %s", kind, w.Name, w.From, w.To, w.Loc)
	}
	if w.Cron.schedule != nil {
		return fmt.Sprintf("%s %s: cron %q for %s %s", kind, w.Name, w.Cron.Spec, w.Duration, w.Loc)
	}
	return fmt.Sprintf("%s %s: %s to %s", kind, w.Name, w.Start.Format(time.RFC3339), w.End.Format(time.RFC3339))
}
