// Package process runs a server under test as a child process: it starts
// it, keeps its output, polls it until it answers, and stops it. The e2e
// framework (stagegate serve, the CNCF registry) and the benchmark (serve,
// OPA and the floor server) start, wait for and stop their processes
// through it, so that all of them do it the same way.
//
// It does not import testing: bench is a program, not a test. The e2e
// framework wraps it with helpers that fail the test.
package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ErrKilled is what Stop returns when the process did not exit within its
// grace period after SIGTERM and was killed.
var ErrKilled = errors.New("process: killed after the grace period")

// pollInterval is how often Poll asks a probe. Readiness is a bounded
// context, never this interval: a slow machine polls more often, not
// differently.
const pollInterval = 50 * time.Millisecond

// Process is a started child process.
type Process struct {
	name string
	cmd  *exec.Cmd
	out  *Output
	done chan struct{} // closed once cmd has been waited for
	err  error         // what Wait returned, once done is closed
}

// Option configures Start.
type Option func(*options)

type options struct {
	env   []string
	dir   string
	log   io.Writer
	limit int
	grace time.Duration
}

// WithEnv adds KEY=value pairs to the environment the process inherits.
func WithEnv(kv ...string) Option { return func(o *options) { o.env = append(o.env, kv...) } }

// WithDir runs the process in dir.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithLog also copies the process's stdout and stderr to w (a log file).
func WithLog(w io.Writer) Option { return func(o *options) { o.log = w } }

// WithOutputLimit keeps only about the last n bytes of output in memory;
// for processes that run long. Without it all output is kept.
func WithOutputLimit(n int) Option { return func(o *options) { o.limit = n } }

// WithCancelGrace is how long the process has to exit after SIGTERM when
// Start's context is cancelled, before it is killed (default 20 s).
func WithCancelGrace(d time.Duration) Option { return func(o *options) { o.grace = d } }

// Start starts bin with args. name labels the process in errors. When ctx
// is cancelled the process gets SIGTERM, and SIGKILL after the cancel
// grace; tests pass a context that outlives them and call Stop.
func Start(ctx context.Context, name, bin string, args []string, opts ...Option) (*Process, error) {
	o := options{grace: 20 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	p := &Process{name: name, out: NewOutput(o.limit), done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = o.dir
	cmd.Env = append(os.Environ(), o.env...)
	var w io.Writer = p.out
	if o.log != nil {
		w = io.MultiWriter(p.out, o.log)
	}
	cmd.Stdout, cmd.Stderr = w, w
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = o.grace
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("process: start %s: %w", name, err)
	}
	p.cmd = cmd
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Name is the label given to Start.
func (p *Process) Name() string { return p.name }

// Pid is the operating system's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been waited for.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is the exit status (nil for exit 0) once the process has exited, and
// nil before.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.err
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error {
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("process: signal %s: %w", p.name, err)
	}
	return nil
}

// Wait returns the exit status once the process exits, or ctx's error if
// ctx ends first; the process is left running then.
func (p *Process) Wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		return fmt.Errorf("process: %s still running: %w", p.name, ctx.Err())
	}
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it. It returns the exit status, or ErrKilled when it had to kill.
// Stopping an exited process returns its exit status.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		p.Kill()
		return fmt.Errorf("%w (%s, %v)", ErrKilled, p.name, grace)
	}
}

// Kill sends SIGKILL and waits for the process to go.
func (p *Process) Kill() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// Output is what the process has written to stdout and stderr.
func (p *Process) Output() string { return p.out.String() }

// Tail is at most the last n bytes of Output.
func (p *Process) Tail(n int) string { return p.out.Tail(n) }

// PeakRSS is the process's peak resident set size in bytes: from its
// resource usage once it has exited, from /proc while it runs.
func (p *Process) PeakRSS() int64 {
	if p.Exited() {
		if ru, ok := p.cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			return ru.Maxrss * 1024
		}
		return 0
	}
	return PeakRSS(p.Pid())
}

// PeakRSS is the peak RSS (VmHWM) of process pid, in bytes, or 0 once it
// has exited.
func PeakRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("VmHWM:")); ok {
			var kb int64
			fmt.Sscanf(string(bytes.TrimSpace(v)), "%d", &kb)
			return kb * 1024
		}
	}
	return 0
}

// Poll calls probe until it returns nil, the process exits, or ctx ends;
// ctx bounds how long readiness may take.
func (p *Process) Poll(ctx context.Context, probe func(context.Context) error) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		err := probe(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("process: %s exited (%v) before it was ready; last probe: %w", p.name, p.err, err)
		case <-ctx.Done():
			return fmt.Errorf("process: %s not ready (%w); last probe: %w", p.name, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// HTTPStatus is a probe for Poll: a GET of url with c answers want, or any
// status when want is 0 (a registry answering 401 is up).
func HTTPStatus(c *http.Client, url string, want int) func(context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		resp, err := c.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if want != 0 && resp.StatusCode != want {
			return fmt.Errorf("GET %s: %s", url, resp.Status)
		}
		return nil
	}
}

// Output collects a child's output; os/exec copies into it from its own
// goroutine while the caller may read it.
type Output struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	limit int // 0: keep everything
}

// NewOutput keeps about the last limit bytes written, or all with 0.
func NewOutput(limit int) *Output { return &Output{limit: limit} }

func (b *Output) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.limit > 0 && b.buf.Len() > b.limit {
		b.buf.Next(b.buf.Len() - b.limit/2)
	}
	return b.buf.Write(p)
}

// String is everything kept.
func (b *Output) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is at most the last n bytes kept.
func (b *Output) Tail(n int) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.buf.Bytes()
	if len(p) > n {
		p = p[len(p)-n:]
	}
	return string(p)
}
