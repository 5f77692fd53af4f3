package reporter_test

import (
	"context"
	"flag"
	"os"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
)

// The reporter process collects garbage at -gc-percent (400 by default)
// unless GOGC says otherwise; a value out of range is refused, by name.
func TestBinaryGCPercent(t *testing.T) {
	b := reporter.NewBinary()
	fs := flag.NewFlagSet("reporter", flag.ContinueOnError)
	b.RegisterFlags(fs)
	if err := fs.Parse([]string{"-gc-percent", "10"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "gc-percent") {
		t.Fatalf("Validate() = %v, want an error naming gc-percent", err)
	}
	if os.Getenv("GOGC") != "" {
		t.Skip("GOGC is set: it wins over -gc-percent")
	}
	b = reporter.NewBinary()
	comps := b.Components(zerolog.Nop())
	if comps[0].Name() != "gc percent" {
		t.Fatalf("first component %q, want the gc percent", comps[0].Name())
	}
	if err := comps[0].Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if was := debug.SetGCPercent(100); was != reporter.GCPercent {
		t.Fatalf("GOGC after start %d, want %d", was, reporter.GCPercent)
	}
}
