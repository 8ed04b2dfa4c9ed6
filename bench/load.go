package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/stagegate/stagegate/test/e2e/framework/process"
)

// proc is a server under test running as its own process, started, polled
// and stopped by the same code as the e2e tests' servers.
type proc struct {
	name   string
	p      *process.Process
	target string // URL the reviews are posted to
	health string // URL that answers 200 once it serves
	logf   *os.File
}

// stopGrace is how long a server has to exit after SIGTERM.
const stopGrace = 20 * time.Second

// pid is the process's id, for the /proc readers.
func (p *proc) pid() int { return p.p.Pid() }

// exited reports whether the process has ended.
func (p *proc) exited() bool { return p.p.Exited() }

func startProc(ctx context.Context, name, logPath string, bin string, args ...string) (*proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// The log file has it all; memory keeps only what an error shows.
	p, err := process.Start(ctx, name, bin, args, process.WithLog(logf),
		process.WithOutputLimit(8<<10), process.WithCancelGrace(stopGrace))
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	return &proc{name: name, p: p, logf: logf}, nil
}

// stop ends the process with SIGTERM and returns its peak RSS in bytes.
func (p *proc) stop() int64 {
	if p == nil {
		return 0
	}
	_ = p.p.Stop(stopGrace)
	p.logf.Close()
	return p.p.PeakRSS()
}

// peakRSS is the peak RSS (VmHWM) of a running process, in bytes.
func (p *proc) peakRSS() int64 { return p.p.PeakRSS() }

// peakRSS is the peak RSS (VmHWM) of process pid, in bytes, or 0 once it
// has exited.
func peakRSS(pid int) int64 { return process.PeakRSS(pid) }

// waitReady polls p.health until it answers 200, the process exits, or
// timeout passes.
func (p *proc) waitReady(ctx context.Context, tlsCfg *tls.Config, timeout time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := p.p.Poll(ctx, process.HTTPStatus(c, p.health, http.StatusOK)); err != nil {
		return fmt.Errorf("bench: %w; log %s:\n%s", err, p.logf.Name(), p.p.Tail(2000))
	}
	return nil
}

// clientTLS is the one client TLS configuration: TLS 1.3 only, trusting
// the bench CA, as an API server calling a webhook with a caBundle.
func clientTLS(caFile string) (*tls.Config, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("bench: %s: no certificates", caFile)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13}, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// checkAnswer sends one review and checks that the server allows it and
// echoes its UID, so that no system is measured answering something else.
func checkAnswer(ctx context.Context, tlsCfg *tls.Config, url string, b body) error {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	defer c.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.JSON))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var in, out struct {
		Request  struct{ UID string }
		Response struct {
			UID     string
			Allowed bool
		}
	}
	_ = json.Unmarshal(b.JSON, &in)
	if err := json.Unmarshal(raw, &out); err != nil || resp.StatusCode != 200 || !out.Response.Allowed || out.Response.UID != in.Request.UID {
		return fmt.Errorf("bench: %s answered %d %s to the %s review, want allowed with uid %s", url, resp.StatusCode, raw, b.Name, in.Request.UID)
	}
	return nil
}

// newClient is the one client of every system: keep-alive HTTP/1.1 with
// TLS 1.3 and a bounded pool, as an API server's webhook client has
// (without the bound an overloaded server gets thousands of connections,
// and its RSS measures the client's backlog). Each system gets its own,
// kept for its warm-up and all its rates, so that measured runs reuse warm
// connections; a vegeta Attacker is single-use, the client is not.
func newClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     tlsCfg,
			MaxIdleConnsPerHost: 64,
			MaxConnsPerHost:     64,
			// A non-nil empty map turns HTTP/2 off.
			TLSNextProto: map[string]func(string, *tls.Conn) http.RoundTripper{},
		},
	}
}

// attack offers rate requests/s of the bodies (in turn) to url for d with
// vegeta's open-loop constant pacer, and returns exact percentiles of every
// latency. A response that is not HTTP 200 with "allowed":true counts as
// an error.
func attack(client *http.Client, url string, bodies []body, rate int, d time.Duration) LoadRun {
	hdr := http.Header{"Content-Type": []string{"application/json"}}
	targets := make([]vegeta.Target, len(bodies))
	for i, b := range bodies {
		targets[i] = vegeta.Target{Method: http.MethodPost, URL: url, Body: b.JSON, Header: hdr}
	}
	atk := vegeta.NewAttacker(vegeta.Client(client), vegeta.Workers(16), vegeta.MaxBody(4096))
	pacer := vegeta.ConstantPacer{Freq: rate, Per: time.Second}
	var lat []time.Duration
	var m vegeta.Metrics
	run := LoadRun{Rate: rate, Seconds: d.Seconds(), LoadAvg1: loadAvg()}
	errSamples := map[string]bool{}
	for res := range atk.Attack(vegeta.NewStaticTargeter(targets...), pacer, d, "bench") {
		m.Add(res)
		lat = append(lat, res.Latency)
		if res.Error != "" || res.Code != http.StatusOK || !allowed(res.Body) {
			run.Errors++
			msg := res.Error
			if msg == "" {
				msg = fmt.Sprintf("HTTP %d: %.200s", res.Code, res.Body)
			}
			if len(errSamples) < 5 {
				errSamples[msg] = true
			}
		}
	}
	m.Close()
	run.Requests = len(lat)
	run.Achieved = m.Rate
	for msg := range errSamples {
		run.ErrorSamples = append(run.ErrorSamples, msg)
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		i := min(int(p*float64(len(lat))), len(lat)-1)
		return ms(lat[i])
	}
	run.P50, run.P90, run.P99, run.P999 = q(0.50), q(0.90), q(0.99), q(0.999)
	if len(lat) > 0 {
		run.Max = ms(lat[len(lat)-1])
	}
	return run
}

func allowed(body []byte) bool {
	return bytes.Contains(body, []byte(`"allowed":true`)) || bytes.Contains(body, []byte(`"allowed": true`))
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// writeOPAData writes data.promotions for the same digests the n-entry
// fixture promotes, unless it exists.
func writeOPAData(path string, n int) error {
	if exists(path) {
		return nil
	}
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	var buf bytes.Buffer
	buf.WriteString(`{"promotions":{`)
	for i := range n {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `%q:{%q:{"promoted":true,"revoked":false,"index":%d}}`, digestOf(i), benchStage, i)
		if buf.Len() > 1<<20 {
			if _, err := f.Write(buf.Bytes()); err != nil {
				f.Close()
				return fmt.Errorf("bench: %w", err)
			}
			buf.Reset()
		}
	}
	buf.WriteString("}}\n")
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("bench: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return os.Rename(tmp, filepath.Clean(path))
}

// loadAvg is the 1-minute load average, recorded with each run because
// other work on the machine shows in the tail latencies.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var v float64
	fmt.Sscanf(string(b), "%f", &v)
	return v
}

// cpuTicks is the CPU time (user + system, in clock ticks) process pid has
// used, or 0 once it has exited.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields 14 and 15 count
	// from the ')' that ends it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	user, _ := strconv.ParseInt(f[11], 10, 64)
	sys, _ := strconv.ParseInt(f[12], 10, 64)
	return user + sys
}

// settle waits until none of the servers is still busy with an earlier
// run, at most max. An overloaded OPA server goes on draining its backlog
// and collecting its heap for seconds after its attack ends; without this
// the next system's run shared the two cores with it.
func settle(ctx context.Context, procs []*proc, max time.Duration) time.Duration {
	const window = 500 * time.Millisecond
	start := time.Now()
	busy := func() int64 {
		var t int64
		for _, p := range procs {
			t += cpuTicks(p.pid())
		}
		return t
	}
	before, sysBefore := busy(), machineTicks()
	for time.Since(start) < max {
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(window):
		}
		after, sysAfter := busy(), machineTicks()
		// Clock ticks are 10 ms: at most 2 in 500 ms is under 5% of a
		// core. The machine as a whole (the kernel reclaiming the page
		// cache a ledger verify filled, say) may use at most 10% of it.
		quiet := after-before <= 2 && sysAfter.busy-sysBefore.busy <= (sysAfter.total-sysBefore.total)/10
		if quiet {
			break
		}
		before, sysBefore = after, sysAfter
	}
	return time.Since(start)
}

// machineTicks is the first line of /proc/stat: clock ticks spent busy
// (neither idle nor waiting for I/O) and in all, over every CPU.
func machineTicks() (t struct{ busy, total int64 }) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return t
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i == 8 || i == 9 { // guest time is already counted in user
			continue
		}
		t.total += n
		if i != 3 && i != 4 { // idle, iowait
			t.busy += n
		}
	}
	return t
}
