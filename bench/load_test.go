package main

import (
	"os"
	"testing"
	"time"
)

// TestCPUCounters checks the /proc readers settle relies on: spinning this
// process shows up in its own counter and in the machine's busy time.
func TestCPUCounters(t *testing.T) {
	pid := os.Getpid()
	p0, m0 := cpuTicks(pid), machineTicks()
	for end := time.Now().Add(300 * time.Millisecond); time.Now().Before(end); {
	}
	p1, m1 := cpuTicks(pid), machineTicks()
	if p1-p0 < 10 { // 300 ms of spinning is 30 ticks; allow a loaded machine
		t.Errorf("process ticks %d → %d after spinning 300 ms", p0, p1)
	}
	if m1.busy-m0.busy+5 < p1-p0 || m1.total-m0.total < m1.busy-m0.busy {
		t.Errorf("machine ticks busy %d → %d, total %d → %d; process used %d", m0.busy, m1.busy, m0.total, m1.total, p1-p0)
	}
	if cpuTicks(-1) != 0 {
		t.Error("cpuTicks of no process is not 0")
	}
}
