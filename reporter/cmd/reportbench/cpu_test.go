package main

import (
	"os"
	"testing"
	"time"
)

// The /proc reading of a process's CPU agrees with getrusage for this one.
func TestCPUTime(t *testing.T) {
	x := 0
	for start := time.Now(); time.Since(start) < 200*time.Millisecond; x++ {
	}
	self, err := cpuTime(0)
	if err != nil {
		t.Fatal(err)
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
