package allinone

import (
	"context"
	"errors"
	"flag"
	"io"
	"os"
	"runtime/debug"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/config"
)

// Binary is the all-in-one process, run by the same runner (svc.Main) as
// the four service binaries, over all the components at once.
type Binary struct {
	Config Config
	// MemoryLimitMiB is the process's soft memory limit (0: none).
	MemoryLimitMiB int64
	// Out receives the start banner (standard output by default).
	Out io.Writer
}

// NewBinary is the all-in-one with its defaults.
func NewBinary() *Binary {
	return &Binary{Config: DefaultConfig(), MemoryLimitMiB: 256, Out: os.Stdout}
}

// RegisterFlags adds the process's settings and every component's,
// prefixed: -edge-*, -workers-*, -registry-*, -reporter-*, -nats-*; the
// bus's are -stream-*, -consumer-*, -dead-letter-*. A few short names are
// kept for earlier set-ups.
func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	c := &b.Config
	fs.StringVar(&c.DataDir, "data-dir", c.DataDir, "directory for the NATS stream store and credentials, the event store and the admin token")
	fs.StringVar(&c.AdminToken, "admin-token", "", "admin credential (default: generated once and kept in <data-dir>/admin-token)")
	fs.Int64Var(&b.MemoryLimitMiB, "memory-limit-mib", b.MemoryLimitMiB, "soft memory limit of the process in MiB: the garbage collector works harder near it, so a load peak does not grow the heap to twice what is live (0: none; GOMEMLIMIT, when set, wins)")
	c.NATS.RegisterFlags("nats-", fs)
	c.Edge.RegisterFlags("edge-", fs)
	c.Worker.RegisterFlags("workers-", fs)
	c.Registry.RegisterFlags("registry-", fs)
	c.Reporter.RegisterFlags("reporter-", fs)
	c.Bus.RegisterFlags("", fs)
	// Short names of the same settings (config.Alias: one setting, so the
	// environment cannot override a name given on the command line).
	config.Alias(fs, "http-listen", "edge-http-listen")
	config.Alias(fs, "workers", "workers-loops")
	config.Alias(fs, "no-fsync", "nats-no-fsync")
	config.Alias(fs, "max-inflight-body-bytes", "edge-max-inflight-body-bytes")
	config.Alias(fs, "report-cache-ttl", "reporter-report-cache-ttl")
}

// Validate checks every setting, naming a bad one.
func (b *Binary) Validate() error {
	c := b.Config
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, config.Errorf("data-dir", "must be set"))
	}
	if b.MemoryLimitMiB < 0 || (b.MemoryLimitMiB > 0 && b.MemoryLimitMiB < 64) {
		errs = append(errs, config.Errorf("memory-limit-mib", "must be 0 (none) or at least 64"))
	}
	if c.AdminToken != "" && len(c.AdminToken) < admintoken.MinLen {
		errs = append(errs, config.Errorf("admin-token", "must be at least %d characters", admintoken.MinLen))
	}
	return errors.Join(append(errs, c.NATS.Validate(), c.Edge.Validate(), c.Worker.Validate(), c.Registry.Validate(),
		c.Reporter.Validate(), c.Bus.Validate())...)
}

// MinShutdown is the least -shutdown-timeout that lets a stopping worker
// finish its batch (-workers-shutdown-grace) and the rest stop.
func (b *Binary) MinShutdown() time.Duration { return b.Config.Worker.ShutdownGrace + 10*time.Second }

// Components are the memory limit, every part of the system (New), and
// the banner, printed once all are up.
func (b *Binary) Components(log zerolog.Logger) []component.Component {
	a := New(b.Config, log)
	comps := []component.Component{&component.Func{N: "memory limit", StartFn: func(context.Context) error {
		if b.MemoryLimitMiB > 0 && os.Getenv("GOMEMLIMIT") == "" {
			debug.SetMemoryLimit(b.MemoryLimitMiB << 20)
		}
		return nil
	}}}
	comps = append(comps, a.comps...)
	return append(comps, &component.Func{N: "banner", StartFn: func(context.Context) error {
		a.Banner(b.Out)
		return nil
	}})
}
