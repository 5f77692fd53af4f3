package testenv

import (
	"os"
	"testing"
)

// Heavy marks a test that checks scale or every combination of a space
// rather than concurrency. Under the race detector, which slows such a
// test tenfold on Pebble (its invariant checks, on in race builds, take a
// stack trace at every table open), it is skipped; `make unit` runs it
// again without the detector (HEAVY in the Makefile, which
// TestHeavyTestsRun keeps complete), with VT_HEAVY_PASS set: a race build
// there (GOFLAGS=-race) fails rather than skip them in both passes.
func Heavy(t testing.TB) {
	t.Helper()
	if !raceDetector {
		return
	}
	if os.Getenv("VT_HEAVY_PASS") != "" {
		t.Fatal("the pass of heavy tests is a race build (GOFLAGS=-race?): they would run in neither pass")
	}
	t.Skip("a heavy test: `make unit` runs it without the race detector")
}
