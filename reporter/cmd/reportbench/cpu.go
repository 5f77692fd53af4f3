package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuTime is the CPU (user and system) a process has used: this one for
// pid 0, else the one of pid, from /proc (-cpu-of: the Cassandra JVM).
func cpuTime(pid int) (time.Duration, error) {
	if pid == 0 {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			return 0, err
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command may hold spaces; the fields after it do not.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}

// cpuMeter measures the CPU per report of this process and of another.
type cpuMeter struct {
	pid        int
	self, them time.Duration
}

func (m *cpuMeter) start() error {
	var err error
	if m.self, err = cpuTime(0); err != nil {
		return err
	}
	if m.pid != 0 {
		m.them, err = cpuTime(m.pid)
	}
	return err
}

// per is the CPU of each process per report, over n reports since start.
func (m *cpuMeter) per(n int) (self, them float64, err error) {
	s, err := cpuTime(0)
	if err != nil {
		return 0, 0, err
	}
	self = float64((s - m.self).Microseconds()) / 1000 / float64(n)
	if m.pid != 0 {
		t, err := cpuTime(m.pid)
		if err != nil {
			return 0, 0, err
		}
		them = float64((t - m.them).Microseconds()) / 1000 / float64(n)
	}
	return self, them, nil
}
