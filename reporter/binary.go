package reporter

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/debug"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/svcstore"
)

// GCPercent is the reporter process's GOGC unless the environment sets
// one: a report allocates enough to run the collector many times over
// while the live heap stays small (caches, sketch buffers), so a higher
// target trades a few times that heap for about a fifth of a report's CPU
// (docs/PERFORMANCE.md).
const GCPercent = 400

// Binary is the reporter process: the shared parts of a storage-backed
// service (its -redis-url is the report cache) and the reporter component.
type Binary struct {
	svcstore.Service
	Reporter  Config
	GCPercent int
}

// NewBinary is the reporter binary with its defaults.
func NewBinary() *Binary {
	return &Binary{Service: svcstore.NewService("reporter", "Redis URL of the report cache (empty: none)"), Reporter: DefaultConfig(), GCPercent: GCPercent}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.Service.RegisterFlags(fs)
	b.Reporter.RegisterFlags("", fs)
	fs.IntVar(&b.GCPercent, "gc-percent", b.GCPercent, "the garbage collector's target, as GOGC (GOGC, when set, wins): heap growth over the live heap, in percent, before a collection")
}

func (b *Binary) Validate() error {
	var gc error
	if b.GCPercent < 50 || b.GCPercent > 2000 {
		gc = fmt.Errorf("gc-percent: %d is outside 50 to 2000", b.GCPercent)
	}
	return errors.Join(b.Reporter.Validate(), b.Service.Validate(), gc)
}

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var r svcstore.Running
	gc := &component.Func{N: "gc percent", StartFn: func(context.Context) error {
		if os.Getenv("GOGC") == "" {
			debug.SetGCPercent(b.GCPercent)
		}
		return nil
	}}
	return append(append([]component.Component{gc}, b.Service.Components(log, &r)...), NewComponent(b.Reporter, func() Deps {
		d := Deps{NC: r.NC, JS: r.JS, Store: r.Store, Admin: r.Admin}
		if r.Cache != nil {
			d.Cache = r.Cache
		}
		return d
	}, log))
}
