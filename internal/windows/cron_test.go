package windows

import (
	"errors"
	"testing"
	"time"
)

func cronWindow(t *testing.T, deny bool, name, spec string, d time.Duration) Window {
	t.Helper()
	c, err := ParseCron(spec, berlin(t))
	if err != nil {
		t.Fatal(err)
	}
	return Window{Deny: deny, Name: name, Cron: c, Duration: d, Loc: berlin(t)}
}

// TestOpenCron: cron spans in Europe/Berlin, across the 2026 DST changes
// (clocks forward Sun 29 March 02:00, back Sun 25 October 03:00), with an
// injected time: the duration counts on the wall clock, so the weekend
// freeze ends Monday 08:00 whatever the offset.
func TestOpenCron(t *testing.T) {
	weekend := cronWindow(t, true, "weekend freeze", "0 16 * * 5", 64*time.Hour)
	monthly := cronWindow(t, false, "first of the month", "0 9 1 * *", 8*time.Hour)
	night := cronWindow(t, false, "sunday night", "30 2 * * 0", time.Hour)
	xmas := Window{Deny: true, Name: "year-end freeze", Start: ts(t, "2026-12-20T00:00:00+01:00"), End: ts(t, "2027-01-04T00:00:00+01:00")}
	tests := map[string]struct {
		s    Schedule
		at   string
		open bool
		next string // "" for never
	}{
		"deny: before it":                               {Schedule{weekend}, "2026-10-23T13:59:00Z", true, "2026-10-23T14:00:00Z"},
		"deny: its first minute":                        {Schedule{weekend}, "2026-10-23T14:00:00Z", false, "2026-10-26T07:00:00Z"},
		"deny across autumn DST: Mon 08:00 CET, 65h":    {Schedule{weekend}, "2026-10-24T12:00:00Z", false, "2026-10-26T07:00:00Z"},
		"deny across spring DST: Mon 08:00 CEST, 63h":   {Schedule{weekend}, "2026-03-28T12:00:00Z", false, "2026-03-30T06:00:00Z"},
		"deny: its end is open":                         {Schedule{weekend}, "2026-10-26T07:00:00Z", true, "2026-10-30T15:00:00Z"},
		"allow monthly: the next is weeks away":         {Schedule{monthly}, "2026-03-02T10:00:00Z", false, "2026-04-01T07:00:00Z"},
		"allow monthly: inside it":                      {Schedule{monthly}, "2026-04-01T08:00:00Z", true, "2026-04-01T15:00:00Z"},
		"skipped hour: does not fire that day":          {Schedule{night}, "2026-03-29T00:00:00Z", false, "2026-04-05T00:30:00Z"},
		"repeated hour: first 02:30 opens":              {Schedule{night}, "2026-10-25T00:00:00Z", false, "2026-10-25T00:30:00Z"},
		"repeated hour: open until 03:30 CET":           {Schedule{night}, "2026-10-25T00:45:00Z", true, "2026-10-25T02:30:00Z"},
		"repeated hour: second 02:30 changes nothing":   {Schedule{night}, "2026-10-25T01:30:00Z", true, "2026-10-25T02:30:00Z"},
		"one-off freeze ends inside the weekend freeze": {Schedule{weekend, xmas}, "2026-12-22T10:00:00Z", false, "2027-01-04T07:00:00Z"},
		"allow cron and deny cron: deny wins":           {Schedule{monthly, cronWindow(t, true, "x", "0 10 1 * *", time.Hour)}, "2026-04-01T08:30:00Z", false, "2026-04-01T09:00:00Z"},
		"a weekly and a cron span together":             {Schedule{weekend, {Name: "office", Weekly: true, From: wt(t, "Mon 08:00"), To: wt(t, "Fri 18:00"), Loc: berlin(t)}}, "2026-10-26T06:00:00Z", false, "2026-10-26T07:00:00Z"},
		"overlapping firings are one span":              {Schedule{cronWindow(t, true, "hourly", "0 * * * *", 90*time.Minute)}, "2026-05-05T10:00:00Z", false, ""},
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

func TestParseCron(t *testing.T) {
	tests := map[string]struct {
		spec string
		bad  bool
	}{
		"friday 16:00":         {spec: "0 16 * * 5"},
		"names":                {spec: "0 16 * * fri"},
		"ranges and steps":     {spec: "*/15 8-17 * * mon-fri"},
		"four fields":          {spec: "0 16 * *", bad: true},
		"six fields (seconds)": {spec: "0 0 16 * * 5", bad: true},
		"minute 61":            {spec: "61 16 * * 5", bad: true},
		"a time zone in it":    {spec: "TZ=UTC 0 16 * * 5", bad: true},
		"a descriptor":         {spec: "@every 1h", bad: true},
		"never fires (30 Feb)": {spec: "0 0 30 2 *", bad: true},
		"empty":                {spec: "", bad: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c, err := ParseCron(tc.spec, time.UTC)
			if tc.bad {
				if !errors.Is(err, ErrCron) {
					t.Fatalf("err = %v, want ErrCron", err)
				}
				return
			}
			if err != nil || c.Spec != tc.spec {
				t.Fatalf("got %+v, %v", c, err)
			}
		})
	}
}
