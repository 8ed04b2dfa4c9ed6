package process

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestStopAndKill(t *testing.T) {
	tests := map[string]struct {
		script  string
		wantErr func(error) bool
	}{
		"exits 0 on SIGTERM": {
			script:  `trap 'exit 0' TERM; echo up; while :; do sleep 0.05; done`,
			wantErr: func(err error) bool { return err == nil },
		},
		"ignores SIGTERM": {
			script:  `trap '' TERM; echo up; while :; do sleep 0.05; done`,
			wantErr: func(err error) bool { return errors.Is(err, ErrKilled) },
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			p, err := Start(context.Background(), name, "sh", []string{"-c", tc.script})
			if err != nil {
				t.Fatal(err)
			}
			// The trap is set once "up" is written.
			if err := p.Poll(t.Context(), func(context.Context) error {
				if !strings.Contains(p.Output(), "up") {
					return errors.New("not up")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if err := p.Stop(200 * time.Millisecond); !tc.wantErr(err) {
				t.Errorf("Stop = %v", err)
			}
			if !p.Exited() {
				t.Error("not exited after Stop")
			}
			if err2 := p.Stop(time.Second); tc.wantErr(nil) && err2 != nil {
				t.Errorf("second Stop = %v, want the exit status nil", err2)
			}
			p.Kill() // no-op once exited
		})
	}
}

func TestPollExited(t *testing.T) {
	p, err := Start(context.Background(), "false", "false", nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Poll(t.Context(), func(context.Context) error { return errors.New("never ready") })
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.Contains(err.Error(), "never ready") {
		t.Errorf("Poll of an exiting process = %v, want it to say it exited and the last probe", err)
	}
	var ee *exec.ExitError
	if !errors.As(p.Err(), &ee) {
		t.Errorf("Err = %v, want an exit error", p.Err())
	}
}

func TestPollContext(t *testing.T) {
	p, err := Start(context.Background(), "sleep", "sleep", []string{"30"})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Kill()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := p.Poll(ctx, func(context.Context) error { return errors.New("no") }); !errors.Is(err, context.Canceled) {
		t.Errorf("Poll with a cancelled context = %v", err)
	}
	if err := p.Wait(ctx); !errors.Is(err, context.Canceled) || p.Exited() {
		t.Errorf("Wait with a cancelled context = %v, exited %v; want Canceled and still running", err, p.Exited())
	}
}

func TestOutputLimit(t *testing.T) {
	o := NewOutput(100)
	for range 50 {
		o.Write([]byte(strings.Repeat("x", 9) + "\n"))
	}
	o.Write([]byte("last\n"))
	if n := len(o.String()); n > 110 {
		t.Errorf("kept %d bytes, limit 100", n)
	}
	if !strings.HasSuffix(o.String(), "last\n") || o.Tail(5) != "last\n" {
		t.Errorf("tail lost: %q", o.Tail(20))
	}
	if all := NewOutput(0); func() bool { all.Write(make([]byte, 1<<20)); return len(all.String()) != 1<<20 }() {
		t.Error("an unlimited Output dropped bytes")
	}
}
