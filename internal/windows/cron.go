package windows

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Cron spans start each time a cron schedule fires on the wall clock of
// Loc and last Duration on that wall clock, as weekly spans do: 64h from
// Friday 16:00 ends Monday 08:00 also on the weekend the clocks change.
// Unlike weekly spans they need not repeat every week ("0 0 1 * *", the
// first of each month), so the next change is looked for by walking their
// boundaries (Schedule.Open), up to cronHorizon ahead.

// Cron is a parsed cron schedule with its spec, for messages.
type Cron struct {
	Spec     string
	schedule cron.Schedule
}

// MaxCronDuration bounds a cron span: longer freezes are one-off, and a
// span is found by reading the firings of its last Duration.
const MaxCronDuration = 31 * 24 * time.Hour

// ErrCron is what ParseCron's errors wrap.
var ErrCron = errors.New("not a 5-field cron schedule like \"0 16 * * 5\" (minute hour day-of-month month day-of-week)")

// cronParser reads the standard five fields and no descriptors: "@every
// 1h" counts from whenever it is asked, which is no calendar.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// ParseCron reads a standard 5-field cron spec, to be evaluated in loc.
func ParseCron(spec string, loc *time.Location) (Cron, error) {
	s := strings.TrimSpace(spec)
	if strings.HasPrefix(s, "TZ=") || strings.HasPrefix(s, "CRON_TZ=") {
		// The window's timeZone says where it is; two places would disagree.
		return Cron{}, fmt.Errorf("%q: set the time zone with timeZone, not in the spec: %w", spec, ErrCron)
	}
	parsed, err := cronParser.Parse(s)
	if err != nil {
		return Cron{}, fmt.Errorf("%q: %w: %w", spec, ErrCron, err)
	}
	ss, ok := parsed.(*cron.SpecSchedule)
	if !ok {
		return Cron{}, fmt.Errorf("%q: %w", spec, ErrCron)
	}
	ss.Location = loc
	// robfig/cron gives up after five years: a spec that does not fire in
	// five years from a leap year's start never fires ("0 0 30 2 *").
	if ss.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return Cron{}, fmt.Errorf("%q never fires: %w", spec, ErrCron)
	}
	return Cron{Spec: s, schedule: ss}, nil
}

// maxShift is more than any change of a wall clock's offset (DST moves
// it by at most two hours): a span that started earlier than its
// Duration and this ago has ended.
const maxShift = 3 * time.Hour

// cronEnd is when the span that starts at a ends: Duration later on the
// wall clock of Loc (time.Date normalises the overflowing seconds).
func (w Window) cronEnd(a time.Time) time.Time {
	l := a.In(w.Loc)
	return time.Date(l.Year(), l.Month(), l.Day(), l.Hour(), l.Minute(), l.Second()+int(w.Duration/time.Second), 0, w.Loc)
}

// cronStarts calls fn with each firing in (after, until], in order, until
// fn returns false.
func (w Window) cronStarts(after, until time.Time, fn func(time.Time) bool) {
	for a := w.Cron.schedule.Next(after); !a.IsZero() && !a.After(until); a = w.Cron.schedule.Next(a) {
		if !fn(a) {
			return
		}
	}
}

// cronContains reports whether a span of w holds t: a firing at or
// before t whose span has not ended. Spans that overlap are one.
func (w Window) cronContains(t time.Time) bool {
	in := false
	w.cronStarts(t.Add(-w.Duration-maxShift), t, func(a time.Time) bool {
		in = w.cronEnd(a).After(t)
		return !in
	})
	return in
}

// cronBoundaries are the starts and ends of w's spans in (after, until].
func (w Window) cronBoundaries(after, until time.Time) []time.Time {
	var out []time.Time
	w.cronStarts(after.Add(-w.Duration-maxShift), until, func(a time.Time) bool {
		if a.After(after) {
			out = append(out, a)
		}
		if e := w.cronEnd(a); e.After(after) && !e.After(until) {
			out = append(out, e)
		}
		return true
	})
	return out
}

// Bounds of the walk for the next change of a schedule with cron spans:
// nothing changing within cronHorizon, or within maxWalk boundaries, is
// taken for "never" (robfig/cron itself looks five years ahead).
const (
	cronHorizon = 5 * 366 * 24 * time.Hour
	walkChunk   = 8 * 24 * time.Hour
	maxWalk     = 2000
)

// openWalk is Open for a schedule with cron spans: the boundaries of every
// span, a chunk of time after another, each checked for a change.
func (s Schedule) openWalk(t time.Time) (open bool, next time.Time) {
	open = s.open(t)
	walked := 0
	for from := t; from.Before(t.Add(cronHorizon)); from = from.Add(walkChunk) {
		until := from.Add(walkChunk)
		var cands []time.Time
		for _, w := range s {
			cands = append(cands, w.boundaries(from, until)...)
		}
		slices.SortFunc(cands, func(a, b time.Time) int { return a.Compare(b) })
		for _, c := range cands {
			if s.open(c) != open {
				return open, c
			}
			if walked++; walked > maxWalk {
				return open, time.Time{}
			}
		}
	}
	return open, time.Time{}
}

func (s Schedule) hasCron() bool {
	return slices.ContainsFunc(s, func(w Window) bool { return w.Cron.schedule != nil })
}
