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
