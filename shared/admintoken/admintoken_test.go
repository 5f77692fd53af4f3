package admintoken

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
)

func TestValidateNamesTheSetting(t *testing.T) {
	for _, c := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "VT_ADMIN_TOKENS"},
		{Config{Tokens: []string{"short"}}, "VT_ADMIN_TOKENS"},
		{Config{File: "/nonexistent/tokens"}, "VT_ADMIN_TOKENS_FILE"},
	} {
		if err := c.cfg.Validate(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want an error naming %s", c.cfg, err, c.want)
		}
	}
	var c Config
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c.RegisterFlags(fs)
	if err := fs.Parse([]string{"-admin-tokens", "token-one-0123456789, token-two-0123456789"}); err != nil || len(c.Tokens) != 2 || c.Validate() != nil {
		t.Fatalf("parsed %v: %v", c.Tokens, err)
	}
}

// TestRotation: the file's tokens rotate without a restart; the setting's stay.
func TestRotation(t *testing.T) {
	file := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(file, []byte("# weekly\ntoken-one-0123456789\n"), 0o600)
	s, err := New(Config{Tokens: []string{"static-token-0123456789"}, File: file})
	if err != nil {
		t.Fatal(err)
	}
	if !apierr.Is(s.Check(""), apierr.AdminRequired) || !apierr.Is(s.Check("token-two-0123456789"), apierr.AdminInvalid) {
		t.Fatal("a missing or unknown token was not refused as such")
	}
	if s.Check("token-one-0123456789") != nil || s.Check("static-token-0123456789") != nil {
		t.Fatal("a configured token was refused")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Watch(ctx, zerolog.Nop())
	os.WriteFile(file, []byte("token-two-0123456789\n"), 0o600)
	os.Chtimes(file, time.Now().Add(time.Second), time.Now().Add(time.Second))
	deadline := time.Now().Add(5 * time.Second)
	for s.Check("token-two-0123456789") != nil {
		if time.Now().After(deadline) {
			t.Fatal("the new token was not picked up")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !apierr.Is(s.Check("token-one-0123456789"), apierr.AdminInvalid) || s.Check("static-token-0123456789") != nil {
		t.Fatal("after rotation: the old file token must be refused, the setting's kept")
	}
}
