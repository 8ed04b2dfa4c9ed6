package main

import (
	"os"
	"syscall"
	"testing"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's utime and stime (USER_HZ,
// 100 on every Linux ABI).
const clockTick = 10 * time.Millisecond

// TestCPUCounters checks the /proc readers settle relies on against the
// kernel's own CPU accounting of this process (getrusage), not against a
// clock: spinning until getrusage says this process has used 300 ms of CPU
// must show as at least 28 ticks in cpuTicks, which reads the same
// counters truncated to whole ticks, however loaded the machine is (a loaded
// machine only makes the spin take longer). The machine's counters must
// move forward, busy no faster than the whole.
func TestCPUCounters(t *testing.T) {
	const spin = 300 * time.Millisecond
	pid := os.Getpid()
	p0, m0 := cpuTicks(pid), machineTicks()
	r0 := processCPU(t)
	for processCPU(t)-r0 < spin {
		// Burn CPU in this goroutine; the loop ends on CPU time used,
		// so no wall-clock quantity enters the assertions.
		for i := 0; i < 1e5; i++ {
			_ = i * i
		}
	}
	r1 := processCPU(t)
	p1, m1 := cpuTicks(pid), machineTicks()

	// p0 was read before r0 and p1 after r1, and cpuTicks truncates
	// utime and stime to whole ticks each: p1-p0 > (r1-r0)/tick - 2.
	if want := int64((r1-r0)/clockTick) - 2; p1-p0 < want {
		t.Errorf("cpuTicks %d → %d (%d ticks) while getrusage counted %v of CPU: want at least %d ticks", p0, p1, p1-p0, r1-r0, want)
	}
	if m1.busy <= m0.busy {
		t.Errorf("machine busy ticks %d → %d while this process used %v of CPU", m0.busy, m1.busy, r1-r0)
	}
	if m1.total-m0.total < m1.busy-m0.busy {
		t.Errorf("machine ticks: busy grew by %d, more than the total's %d", m1.busy-m0.busy, m1.total-m0.total)
	}
	if cpuTicks(-1) != 0 {
		t.Error("cpuTicks of no process is not 0")
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU(t *testing.T) time.Duration {
	t.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
