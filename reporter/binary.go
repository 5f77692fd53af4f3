package reporter

import (
	"errors"
	"flag"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the reporter process: the store and NATS, the optional Redis
// report cache, the admin tokens and the reporter component.
type Binary struct {
	NATS     natsx.ClientConfig
	Store    backend.Config
	Reporter Config
	Admin    admintoken.Config
	RedisURL string
}

// NewBinary is the reporter binary with its defaults.
func NewBinary() *Binary {
	return &Binary{NATS: natsx.ClientConfig{Name: "reporter"}, Reporter: DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.NATS.RegisterFlags(fs)
	b.Store.RegisterFlags(fs)
	b.Reporter.RegisterFlags("", fs)
	b.Admin.RegisterFlags(fs) // the reporter checks the credential edges forward, itself
	fs.StringVar(&b.RedisURL, "redis-url", "", "Redis URL of the report cache (empty: none)")
}

func (b *Binary) Validate() error {
	return errors.Join(b.Reporter.Validate(), b.NATS.Validate(), b.Store.Validate(), svc.CheckRedisURL(b.RedisURL), b.Admin.Validate())
}

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
		NewComponent(b.Reporter, func() Deps {
			deps := Deps{NC: d.NC, JS: d.JS, Store: d.Store, Admin: tokens}
			if cache != nil {
				deps.Cache = cache
			}
			return deps
		}, log),
	}
}
