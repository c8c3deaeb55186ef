//go:build unix

package handlers

import (
	"syscall"
	"testing"
)

// reportCPU adds the process's CPU time (user and system, the GC's
// included) per op as "cpu-ns/op": on a shared machine wall time says
// more about the neighbours than about the code.
func reportCPU(b *testing.B, run func()) {
	before := cpuNanos()
	run()
	b.ReportMetric(float64(cpuNanos()-before)/float64(b.N), "cpu-ns/op")
}

func cpuNanos() int64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// CPUNanos is cpuNanos for the external test package's benchmarks.
var CPUNanos = cpuNanos
