package workers

import (
	"errors"
	"flag"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the workers process: the shared parts of a storage-backed
// service (its -redis-url is the reporters' cache, told of late events;
// its admin tokens guard the dead-letter service) and the workers component.
type Binary struct {
	svcstore.Service
	Workers Config
}

// NewBinary is the workers binary with its defaults.
func NewBinary() *Binary {
	b := &Binary{Service: svcstore.NewService("workers", "Redis of the reporters' cache: late events bump the generation of their partner's cached reports (empty: none; reports of a closed range then lag late events by up to 10 minutes)"),
		Workers: DefaultConfig()}
	// Many statements at once: held up to 200µs to go together
	// (BenchmarkCeiling: 7,812 events/s against 5,979 sent at once).
	b.Store = b.Store.ForWriters()
	return b
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.Service.RegisterFlags(fs)
	b.Workers.RegisterFlags("", fs)
}

func (b *Binary) Validate() error { return errors.Join(b.Service.Validate(), b.Workers.Validate()) }

// MinShutdown is the least -shutdown-timeout that lets a stopping loop
// finish its batch (-shutdown-grace) and the rest stop.
func (b *Binary) MinShutdown() time.Duration { return b.Workers.ShutdownGrace + 10*time.Second }

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var r svcstore.Running
	return append(b.Service.Components(log, &r), NewComponent(b.Workers, func() Deps {
		d := Deps{NC: r.NC, JS: r.JS, Store: r.Store, Admin: r.Admin}
		if r.Cache != nil {
			d.Generations = r.Cache
		}
		return d
	}, log))
}
