package workers

import (
	"errors"
	"flag"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the workers process: the store and NATS, the optional report
// cache, the admin tokens, and the workers component.
type Binary struct {
	NATS     natsx.ClientConfig
	Store    backend.Config
	Workers  Config
	Admin    admintoken.Config
	RedisURL string
}

// NewBinary is the workers binary with its defaults.
func NewBinary() *Binary {
	return &Binary{NATS: natsx.ClientConfig{Name: "workers"}, Workers: DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.NATS.RegisterFlags(fs)
	b.Store.RegisterFlags(fs)
	b.Workers.RegisterFlags("", fs)
	b.Admin.RegisterFlags(fs) // the dead-letter service checks the admin credential edges forward
	fs.StringVar(&b.RedisURL, "redis-url", "", "Redis of the reporters' cache: late events bump the generation of their partner's cached reports (empty: none; reports of a closed range then lag late events by up to 10 minutes)")
}

func (b *Binary) Validate() error {
	return errors.Join(b.NATS.Validate(), b.Store.Validate(), b.Workers.Validate(), b.Admin.Validate(), svc.CheckRedisURL(b.RedisURL))
}

// MinShutdown is the least -shutdown-timeout that lets a stopping loop
// finish its batch (-shutdown-grace) and the rest stop.
func (b *Binary) MinShutdown() time.Duration { return b.Workers.ShutdownGrace + 10*time.Second }

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var (
		cache  *rcache.Cache
		d      svcstore.Deps
		tokens *admintoken.Set
	)
	return []component.Component{
		svc.RedisComponent(b.RedisURL, log, &cache),
		svcstore.Component(b.Store, b.NATS, &d),
		admintoken.Component(&b.Admin, log, &tokens),
		NewComponent(b.Workers, func() Deps {
			deps := Deps{NC: d.NC, JS: d.JS, Store: d.Store, Admin: tokens}
			if cache != nil {
				deps.Generations = cache
			}
			return deps
		}, log),
	}
}
