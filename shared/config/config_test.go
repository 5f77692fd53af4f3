package config

import (
	"flag"
	"strings"
	"testing"
)

func TestParseEnvFallback(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	a := fs.String("nats-url", "default", "")
	b := fs.Int("batch-size", 1, "")
	c := fs.String("other", "keep", "")
	t.Setenv("VT_NATS_URL", "from-env")
	t.Setenv("VT_BATCH_SIZE", "7")
	if err := Parse(fs, []string{"-batch-size", "9"}); err != nil {
		t.Fatal(err)
	}
	if *a != "from-env" || *b != 9 || *c != "keep" {
		t.Fatalf("got %s %d %s", *a, *b, *c)
	}
}

func TestParseNamesBadSetting(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.Int("batch-size", 1, "")
	t.Setenv("VT_BATCH_SIZE", "lots")
	err := Parse(fs, nil)
	if err == nil || !strings.Contains(err.Error(), "VT_BATCH_SIZE") || !strings.Contains(err.Error(), "-batch-size") {
		t.Fatalf("error does not name the setting: %v", err)
	}
}

// A short name is the same setting as its long one: the long name's
// environment variable does not override the short name on the command
// line, nor the short name's the long one; a bool alias needs no value.
func TestAlias(t *testing.T) {
	mk := func() (*flag.FlagSet, *string, *bool) {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		listen := fs.String("edge-http-listen", "a", "")
		nofsync := fs.Bool("nats-no-fsync", false, "")
		Alias(fs, "http-listen", "edge-http-listen")
		Alias(fs, "no-fsync", "nats-no-fsync")
		return fs, listen, nofsync
	}
	t.Setenv("VT_EDGE_HTTP_LISTEN", "from-env")
	fs, listen, nofsync := mk()
	if err := Parse(fs, []string{"-http-listen", "from-flag", "-no-fsync"}); err != nil || *listen != "from-flag" || !*nofsync {
		t.Fatalf("%v %q %v", err, *listen, *nofsync)
	}
	t.Setenv("VT_HTTP_LISTEN", "short-env")
	fs, listen, _ = mk()
	if err := Parse(fs, nil); err != nil || *listen != "from-env" {
		t.Fatalf("both in the environment: %v %q, want the long name's", err, *listen)
	}
	fs, listen, _ = mk()
	if err := Parse(fs, []string{"-edge-http-listen", "long-flag"}); err != nil || *listen != "long-flag" {
		t.Fatalf("%v %q", err, *listen)
	}
}

// A stray argument is refused: the flags after it would be ignored.
func TestParseRefusesStrayArguments(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.String("a", "", "")
	if err := Parse(fs, []string{"stray", "-a", "b"}); err == nil || !strings.Contains(err.Error(), `"stray"`) {
		t.Fatalf("%v", err)
	}
}
