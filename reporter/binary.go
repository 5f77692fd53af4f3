package reporter

import (
	"errors"
	"flag"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/svcstore"
)

// Binary is the reporter process: the shared parts of a storage-backed
// service (its -redis-url is the report cache) and the reporter component.
type Binary struct {
	svcstore.Service
	Reporter Config
}

// NewBinary is the reporter binary with its defaults.
func NewBinary() *Binary {
	return &Binary{Service: svcstore.NewService("reporter", "Redis URL of the report cache (empty: none)"), Reporter: DefaultConfig()}
}

func (b *Binary) RegisterFlags(fs *flag.FlagSet) {
	b.Service.RegisterFlags(fs)
	b.Reporter.RegisterFlags("", fs)
}

func (b *Binary) Validate() error { return errors.Join(b.Reporter.Validate(), b.Service.Validate()) }

func (b *Binary) Components(log zerolog.Logger) []component.Component {
	var r svcstore.Running
	return append(b.Service.Components(log, &r), NewComponent(b.Reporter, func() Deps {
		d := Deps{NC: r.NC, JS: r.JS, Store: r.Store, Admin: r.Admin}
		if r.Cache != nil {
			d.Cache = r.Cache
		}
		return d
	}, log))
}
