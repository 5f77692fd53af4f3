package reporter_test

import (
	"context"
	"flag"
	"os"
	"runtime/debug"
	"strings"
	"testing"
	"time"

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

// -near-check-every: the deployed default, a value read, and values out of
// range refused by name.
func TestBinaryNearCheckEvery(t *testing.T) {
	for _, c := range []struct {
		args []string
		want time.Duration
		bad  bool
	}{
		{nil, reporter.DefaultNearCheckEvery, false},
		{[]string{"-near-check-every", "0"}, 0, false},
		{[]string{"-near-check-every", "2s"}, 2 * time.Second, false},
		{[]string{"-near-check-every", "-1ms"}, 0, true},
		{[]string{"-near-check-every", "11s"}, 0, true},
	} {
		b := reporter.NewBinary()
		fs := flag.NewFlagSet("reporter", flag.ContinueOnError)
		b.RegisterFlags(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		err := b.Reporter.Validate()
		switch {
		case c.bad && (err == nil || !strings.Contains(err.Error(), "near-check-every")):
			t.Errorf("%v: Validate() = %v, want an error naming near-check-every", c.args, err)
		case !c.bad && err != nil:
			t.Errorf("%v: %v", c.args, err)
		case !c.bad && b.Reporter.NearCheckEvery != c.want:
			t.Errorf("%v: %v, want %v", c.args, b.Reporter.NearCheckEvery, c.want)
		}
	}
}
