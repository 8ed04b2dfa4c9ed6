package config

import (
	"strings"
	"testing"
	"time"
)

// TestWindowsLoad: the README's example loads, validates and means what it
// says.
func TestWindowsLoad(t *testing.T) {
	c, err := Load(write(t, `
stages:
  - name: dev
  - name: prod
    groups: [release]
    freezeOverrideGroups: [sre-oncall]
    windows:
      - deny: weekend freeze
        timeZone: Europe/Berlin
        from: "Fri 16:00"
        to: "Mon 08:00"
      - deny: year-end freeze
        start: "2026-12-20T00:00:00+01:00"
        end: "2027-01-04T00:00:00+01:00"
      - deny: release-train freeze
        cron: "0 9 1 * *"
        duration: 48h
        timeZone: Europe/Berlin
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := c.Schedule("prod")
	if err != nil || len(s) != 3 {
		t.Fatalf("schedule = %v, %v", s, err)
	}
	// Fri 27 March 2026 16:30 in Berlin (CET) is frozen until Mon 08:00 CEST.
	open, next := s.Open(time.Date(2026, 3, 27, 15, 30, 0, 0, time.UTC))
	if open || !next.Equal(time.Date(2026, 3, 30, 6, 0, 0, 0, time.UTC)) {
		t.Errorf("open, next = %v, %s; want false, 2026-03-30T06:00:00Z", open, next.UTC())
	}
	// Wed 1 April 2026 10:00 in Berlin (CEST) is in the release-train
	// freeze until Fri 3 April 09:00.
	open, next = s.Open(time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC))
	if open || !next.Equal(time.Date(2026, 4, 3, 7, 0, 0, 0, time.UTC)) {
		t.Errorf("open, next = %v, %s; want false, 2026-04-03T07:00:00Z", open, next.UTC())
	}
	if dev, _ := c.Schedule("dev"); len(dev) != 0 {
		t.Errorf("dev has windows %v", dev)
	}
	prod, _ := c.Stage("prod")
	if len(prod.FreezeOverrideGroups) != 1 || prod.FreezeOverrideGroups[0] != "sre-oncall" {
		t.Errorf("freezeOverrideGroups = %v", prod.FreezeOverrideGroups)
	}
}

// TestWindowsValidate: each bad window is refused naming the stage, the
// entry and the setting.
func TestWindowsValidate(t *testing.T) {
	weekly := func(w Window) Window {
		if w.Deny == "" && w.Allow == "" {
			w.Deny = "freeze"
		}
		return w
	}
	tests := map[string]struct {
		w    Window
		want string
	}{
		"weekly":             {w: weekly(Window{TimeZone: "Europe/Berlin", From: "Fri 16:00", To: "Mon 08:00"})},
		"one-off":            {w: weekly(Window{Start: "2026-12-20T00:00:00Z", End: "2027-01-04T00:00:00Z"})},
		"allow":              {w: Window{Allow: "office", TimeZone: "UTC", From: "Mon 08:00", To: "Fri 18:00"}},
		"unknown zone":       {w: weekly(Window{TimeZone: "Europe/Atlantis", From: "Fri 16:00", To: "Mon 08:00"}), want: `timeZone "Europe/Atlantis"`},
		"no zone":            {w: weekly(Window{From: "Fri 16:00", To: "Mon 08:00"}), want: "timeZone is required"},
		"bad day":            {w: weekly(Window{TimeZone: "UTC", From: "Fry 16:00", To: "Mon 08:00"}), want: `from: "Fry 16:00"`},
		"bad time":           {w: weekly(Window{TimeZone: "UTC", From: "Fri 16:00", To: "Mon 8am"}), want: `to: "Mon 8am"`},
		"only from":          {w: weekly(Window{TimeZone: "UTC", From: "Fri 16:00"}), want: "needs both from and to"},
		"empty span":         {w: weekly(Window{TimeZone: "UTC", From: "Fri 16:00", To: "Fri 16:00"}), want: "would be empty"},
		"end before start":   {w: weekly(Window{Start: "2027-01-04T00:00:00Z", End: "2026-12-20T00:00:00Z"}), want: "is not after start"},
		"bad start":          {w: weekly(Window{Start: "20 Dec 2026", End: "2027-01-04T00:00:00Z"}), want: `start "20 Dec 2026" is not RFC 3339`},
		"both kinds":         {w: weekly(Window{TimeZone: "UTC", From: "Fri 16:00", To: "Mon 08:00", Start: "2026-12-20T00:00:00Z", End: "2027-01-04T00:00:00Z"}), want: "set one of"},
		"neither allow/deny": {w: Window{TimeZone: "UTC", From: "Fri 16:00", To: "Mon 08:00"}, want: "set allow or deny"},
		"allow and deny":     {w: Window{Allow: "a", Deny: "d", TimeZone: "UTC", From: "Fri 16:00", To: "Mon 08:00"}, want: "not both"},
		"no span":            {w: weekly(Window{TimeZone: "UTC"}), want: "set from and to"},
		"cron":               {w: weekly(Window{TimeZone: "Europe/Berlin", Cron: "0 16 * * 5", Duration: Duration(64 * time.Hour)})},
		"cron, bad spec":     {w: weekly(Window{TimeZone: "UTC", Cron: "0 16 * *", Duration: Duration(time.Hour)}), want: `cron: "0 16 * *"`},
		"cron, never fires":  {w: weekly(Window{TimeZone: "UTC", Cron: "0 0 30 2 *", Duration: Duration(time.Hour)}), want: "never fires"},
		"cron, zone in spec": {w: weekly(Window{TimeZone: "UTC", Cron: "CRON_TZ=UTC 0 16 * * 5", Duration: Duration(time.Hour)}), want: "set the time zone with timeZone"},
		"cron, no duration":  {w: weekly(Window{TimeZone: "UTC", Cron: "0 16 * * 5"}), want: "duration 0s"},
		"cron, too long":     {w: weekly(Window{TimeZone: "UTC", Cron: "0 16 * * 5", Duration: Duration(800 * time.Hour)}), want: "duration 800h0m0s"},
		"cron, no zone":      {w: weekly(Window{Cron: "0 16 * * 5", Duration: Duration(time.Hour)}), want: "timeZone is required for a cron span"},
		"duration, no cron":  {w: weekly(Window{TimeZone: "UTC", Duration: Duration(time.Hour)}), want: "cron: a span with a duration needs"},
		"cron and weekly":    {w: weekly(Window{TimeZone: "UTC", Cron: "0 16 * * 5", Duration: Duration(time.Hour), From: "Fri 16:00", To: "Mon 08:00"}), want: "set one of"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Default()
			c.Stages[3].Windows = []Window{tc.w}
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `stage "prod": windows[0]`) {
				t.Fatalf("err = %v, want one naming stage prod, windows[0] and %q", err, tc.want)
			}
		})
	}
	c := Default()
	c.Stages[3].FreezeOverrideGroups = []string{""}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "freezeOverrideGroups") {
		t.Errorf("empty freeze override group: err = %v", err)
	}
}
