package main

import (
	"os"
	"testing"
	"time"
)

// The /proc reading of a process's CPU agrees with getrusage for this one,
// after it spun 200 ms of CPU (not of wall time: on a busy machine that
// can be a fraction of it).
func TestCPUTime(t *testing.T) {
	x := 0
	var self time.Duration
	for deadline := time.Now().Add(time.Minute); self < 200*time.Millisecond; {
		for range 1 << 20 {
			x++
		}
		var err error
		if self, err = cpuTime(0); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("200 ms of CPU not spent in a minute (%v)", self)
		}
	}
	proc, err := cpuTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if self < 150*time.Millisecond || proc < self-50*time.Millisecond || proc > self+50*time.Millisecond {
		t.Fatalf("getrusage %v, /proc %v, after 200 ms of spinning (%d)", self, proc, x)
	}
	if _, err := cpuTime(1 << 30); err == nil {
		t.Fatal("no error for a process that is not there")
	}
}
