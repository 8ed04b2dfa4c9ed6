package windows

import (
	"errors"
	"testing"
	"time"
)

func berlin(t *testing.T) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatalf("load Europe/Berlin: %v", err)
	}
	return loc
}

func wt(t *testing.T, s string) WeekTime {
	t.Helper()
	w, err := ParseWeekTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func ts(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestOpen(t *testing.T) {
	loc := berlin(t)
	weekend := Window{Deny: true, Name: "weekend freeze", Weekly: true, From: wt(t, "Fri 16:00"), To: wt(t, "Mon 08:00"), Loc: loc}
	business := Window{Name: "office hours", Weekly: true, From: wt(t, "Mon 08:00"), To: wt(t, "Fri 18:00"), Loc: loc}
	// In 2026 Berlin's clocks go forward on Sun 29 March 02:00 and back on
	// Sun 25 October 03:00.
	skipped := Window{Name: "night", Weekly: true, From: wt(t, "Sun 02:30"), To: wt(t, "Sun 05:00"), Loc: loc}
	xmas := Window{Deny: true, Name: "year-end freeze", Start: ts(t, "2026-12-20T00:00:00+01:00"), End: ts(t, "2027-01-04T00:00:00+01:00")}
	past := Window{Name: "once", Start: ts(t, "2026-01-01T00:00:00Z"), End: ts(t, "2026-01-02T00:00:00Z")}
	tests := map[string]struct {
		s    Schedule
		at   string
		open bool
		next string // "" for never
	}{
		"no windows: always open":                        {nil, "2026-03-28T12:00:00Z", true, ""},
		"weekly deny: before it":                         {Schedule{weekend}, "2026-03-27T14:59:00Z", true, "2026-03-27T15:00:00Z"},
		"weekly deny: its first minute":                  {Schedule{weekend}, "2026-03-27T15:00:00Z", false, "2026-03-30T06:00:00Z"},
		"weekly deny across spring DST: 63h":             {Schedule{weekend}, "2026-03-28T12:00:00Z", false, "2026-03-30T06:00:00Z"},
		"weekly deny across autumn DST: 65h":             {Schedule{weekend}, "2026-10-23T14:00:00Z", false, "2026-10-26T07:00:00Z"},
		"weekly deny: its end is open":                   {Schedule{weekend}, "2026-10-26T07:00:00Z", true, "2026-10-30T15:00:00Z"},
		"weekly deny: an hour before its end":            {Schedule{weekend}, "2026-10-26T06:00:00Z", false, "2026-10-26T07:00:00Z"},
		"weekly allow: outside it":                       {Schedule{business}, "2026-03-28T12:00:00Z", false, "2026-03-30T06:00:00Z"},
		"weekly allow: inside it":                        {Schedule{business}, "2026-03-25T12:00:00Z", true, "2026-03-27T17:00:00Z"},
		"allow and deny: deny wins":                      {Schedule{business, weekend}, "2026-03-27T15:30:00Z", false, "2026-03-30T06:00:00Z"},
		"boundary in the skipped hour":                   {Schedule{skipped}, "2026-03-29T00:30:00Z", false, "2026-03-29T01:00:00Z"},
		"boundary in the skipped hour, after it":         {Schedule{skipped}, "2026-03-29T01:00:00Z", true, "2026-03-29T03:00:00Z"},
		"repeated hour, first 02:45: not yet":            {Schedule{skipped}, "2026-10-25T00:45:00Z", false, "2026-10-25T01:30:00Z"},
		"repeated hour, second 02:15: not yet":           {Schedule{skipped}, "2026-10-25T01:15:00Z", false, "2026-10-25T01:30:00Z"},
		"repeated hour, second 02:30: open":              {Schedule{skipped}, "2026-10-25T01:30:00Z", true, "2026-10-25T04:00:00Z"},
		"one-off deny over two weeks, then office hours": {Schedule{business, xmas}, "2026-12-22T10:00:00Z", false, "2027-01-04T07:00:00Z"},
		"one-off deny: before it":                        {Schedule{xmas}, "2026-12-19T22:59:00Z", true, "2026-12-19T23:00:00Z"},
		"one-off allow in the past: never again":         {Schedule{past}, "2026-03-01T00:00:00Z", false, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			open, next := tc.s.Open(ts(t, tc.at))
			if open != tc.open {
				t.Errorf("open = %v, want %v", open, tc.open)
			}
			var want time.Time
			if tc.next != "" {
				want = ts(t, tc.next)
			}
			if !next.Equal(want) {
				t.Errorf("next = %s, want %s", next.UTC().Format(time.RFC3339), want.UTC().Format(time.RFC3339))
			}
			if _, closed := tc.s.Closing(ts(t, tc.at)); closed == tc.open {
				t.Errorf("Closing says closed = %v, Open says open = %v", closed, tc.open)
			}
		})
	}
}

func TestParseWeekTime(t *testing.T) {
	tests := map[string]struct {
		in   string
		want WeekTime
		bad  bool
	}{
		"friday afternoon": {in: "Fri 16:00", want: WeekTime{time.Friday, 16, 0}},
		"lower case":       {in: "mon 08:05", want: WeekTime{time.Monday, 8, 5}},
		"no time":          {in: "Fri", bad: true},
		"unknown day":      {in: "Fry 16:00", bad: true},
		"hour 24":          {in: "Fri 24:00", bad: true},
		"one-digit minute": {in: "Fri 16:0", bad: true},
		"not a number":     {in: "Fri ab:00", bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseWeekTime(tc.in)
			if tc.bad {
				if !errors.Is(err, ErrSyntax) {
					t.Fatalf("err = %v, want ErrSyntax", err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
