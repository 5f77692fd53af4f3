// Package admintoken is the admin credential as every service that guards an
// admin operation checks it: tokens given as a setting, plus a file of
// tokens re-read when it changes (rotation without a restart). The edge
// checks the caller's token over HTTP; the registry and the dead-letter
// service check the same token again when the edge forwards it over NATS, so
// a NATS credential alone is never an admin credential.
package admintoken

import (
	"bufio"
	"context"
	"crypto/subtle"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
)

// MinLen is the shortest token accepted.
const MinLen = 16

// Config names where the tokens come from.
type Config struct {
	Tokens []string // -admin-tokens, comma-separated
	File   string   // -admin-tokens-file, one token a line, # comments
}

// RegisterFlags adds -admin-tokens and -admin-tokens-file.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("admin-tokens", "comma-separated admin credentials (16+ characters each)", func(s string) error {
		for _, t := range strings.Split(s, ",") {
			if t = strings.TrimSpace(t); t != "" {
				c.Tokens = append(c.Tokens, t)
			}
		}
		return nil
	})
	fs.StringVar(&c.File, "admin-tokens-file", "", "file of admin tokens, one per line, re-read when it changes (rotation without restart)")
}

// Validate checks that some token is configured and every one is usable.
func (c Config) Validate() error {
	if len(c.Tokens) == 0 && c.File == "" {
		return config.Errorf("admin-tokens", "at least one admin token is required (or -admin-tokens-file)")
	}
	for _, t := range c.Tokens {
		if len(t) < MinLen {
			return config.Errorf("admin-tokens", "admin tokens must be at least %d characters", MinLen)
		}
	}
	if c.File != "" {
		if _, err := ReadFile(c.File); err != nil {
			return config.Errorf("admin-tokens-file", "%v", err)
		}
	}
	return nil
}

// ReadFile reads tokens from a file: one per line, # for comments.
func ReadFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			if len(t) < MinLen {
				return nil, fmt.Errorf("admin tokens must be at least %d characters", MinLen)
			}
			out = append(out, t)
		}
	}
	if len(out) == 0 && sc.Err() == nil {
		return nil, fmt.Errorf("%s holds no token", path)
	}
	return out, sc.Err()
}

// Set is the tokens in force.
type Set struct {
	cfg Config
	cur atomic.Pointer[[]string]
	// read is the file's modification time before New read it, so Watch
	// also catches a change made between New and its own start.
	read time.Time
}

// New loads the tokens of cfg.
func New(cfg Config) (*Set, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Set{cfg: cfg}
	tokens := append([]string{}, cfg.Tokens...)
	if cfg.File != "" {
		if fi, err := os.Stat(cfg.File); err == nil {
			s.read = fi.ModTime()
		}
		toks, err := ReadFile(cfg.File)
		if err != nil {
			return nil, err
		}
		tokens = append(tokens, toks...)
	}
	s.cur.Store(&tokens)
	return s, nil
}

// Static is a set of fixed tokens (the all-in-one's, tests').
func Static(tokens ...string) *Set {
	s := &Set{cfg: Config{Tokens: tokens}}
	all := append([]string{}, tokens...)
	s.cur.Store(&all)
	return s
}

// Check refuses a missing or unknown token. Every token in force is
// compared, in constant time, so timing tells nothing.
func (s *Set) Check(tok string) error {
	if tok == "" {
		return apierr.New(apierr.AdminRequired, "this operation needs the admin credential")
	}
	match := 0
	for _, t := range *s.cur.Load() {
		match |= subtle.ConstantTimeCompare([]byte(tok), []byte(t))
	}
	if match != 1 {
		return apierr.New(apierr.AdminInvalid, "the admin credential is not valid")
	}
	return nil
}

// Watch re-reads the tokens file when it changes, until ctx ends. A bad
// file keeps the tokens in force. Without a file it returns at once.
func (s *Set) Watch(ctx context.Context, log zerolog.Logger) {
	if s.cfg.File == "" {
		return
	}
	last := s.read
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fi, err := os.Stat(s.cfg.File)
		if err != nil || fi.ModTime().Equal(last) {
			continue
		}
		last = fi.ModTime()
		toks, err := ReadFile(s.cfg.File)
		if err != nil {
			log.Error().Err(err).Msg("admin tokens file not reloaded")
			continue
		}
		all := append(append([]string{}, s.cfg.Tokens...), toks...)
		s.cur.Store(&all)
		log.Info().Int("tokens", len(all)).Msg("admin tokens loaded")
	}
}

// Component makes the token set of *cfg (read at start, so an earlier
// component may fill it) into *out at start and follows its file until stop.
func Component(cfg *Config, log zerolog.Logger, out **Set) component.Component {
	var stop context.CancelFunc
	return &component.Func{N: "admin tokens",
		StartFn: func(context.Context) (err error) {
			if *out, err = New(*cfg); err != nil {
				return err
			}
			var wctx context.Context
			wctx, stop = context.WithCancel(context.Background())
			go (*out).Watch(wctx, log)
			return nil
		},
		StopFn: func(context.Context) error {
			if stop != nil {
				stop()
			}
			return nil
		},
	}
}
