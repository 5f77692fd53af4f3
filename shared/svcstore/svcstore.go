// Package svcstore opens what a storage-backed service (registry, reporter,
// workers) needs at start. It is apart from package svc so that the edge,
// which stores nothing, links no storage driver.
package svcstore

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/svc"
)

// Deps are what a storage-backed service opens at start.
type Deps struct {
	Store storage.Store
	NC    *nats.Conn
	JS    jetstream.JetStream
}

// Open opens the store and connects to NATS; Close undoes it (NATS drained
// first, so pending work is flushed before the store closes).
func Open(store backend.Config, natsCfg natsx.ClientConfig, onReconnect func()) (*Deps, error) {
	st, err := store.Open()
	if err != nil {
		return nil, err
	}
	nc, err := natsCfg.Connect(onReconnect)
	if err != nil {
		st.Close()
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		st.Close()
		return nil, err
	}
	return &Deps{Store: st, NC: nc, JS: js}, nil
}

// Close drains NATS, then closes the store, within ctx.
func (d *Deps) Close(ctx context.Context) error {
	var errs []error
	if err := natsx.Drain(ctx, d.NC); err != nil {
		errs = append(errs, err)
	}
	if d.Store == nil {
		return errors.Join(errs...)
	}
	if err := d.Store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("store: %w", err))
	}
	return errors.Join(errs...)
}

// Component opens d at start (the store, then NATS) and closes it at stop.
func Component(store backend.Config, natsCfg natsx.ClientConfig, d *Deps) component.Component {
	return &component.Func{N: "store and NATS",
		StartFn: func(context.Context) error {
			o, err := Open(store, natsCfg, nil)
			if err != nil {
				return err
			}
			*d = *o
			return nil
		},
		StopFn: d.Close,
	}
}

// Service is what every storage-backed binary (registry, reporter,
// workers) shares: its NATS client, its store, the admin tokens it checks
// on what edges forward, and an optional Redis.
type Service struct {
	NATS     natsx.ClientConfig
	Store    backend.Config
	Admin    admintoken.Config
	RedisURL string

	redisUsage string
}

// NewService is a service named name; redisUsage says what its -redis-url is for.
func NewService(name, redisUsage string) Service {
	// Cassandra statements go at once (-cassandra-write-coalesce 0): a
	// request's statements wait on one another. Workers, which write many
	// at once, hold them (backend.Config.ForWriters).
	return Service{NATS: natsx.ClientConfig{Name: name}, redisUsage: redisUsage}
}

// RegisterFlags adds -nats-*, the store's, -admin-tokens(-file) and -redis-url.
func (s *Service) RegisterFlags(fs *flag.FlagSet) {
	s.NATS.RegisterFlags(fs)
	s.Store.RegisterFlags(fs)
	s.Admin.RegisterFlags(fs)
	fs.StringVar(&s.RedisURL, "redis-url", "", s.redisUsage)
}

// Validate checks them all, naming the bad setting.
func (s *Service) Validate() error {
	return errors.Join(s.NATS.Validate(), s.Store.Validate(), s.Admin.Validate(), svc.CheckRedisURL(s.RedisURL))
}

// storeWith is the store's settings with its lines going to log.
func (s *Service) storeWith(log zerolog.Logger) backend.Config {
	c := s.Store
	c.Log = log.With().Str("component", "store").Logger()
	return c
}

// Running is what Components set at start, for the service's own component.
type Running struct {
	Deps
	Admin *admintoken.Set
	Cache *rcache.Cache // nil without -redis-url
}

// Components open Redis, the store and NATS, and the admin tokens into r,
// in that order; the service's own component comes after them.
func (s *Service) Components(log zerolog.Logger, r *Running) []component.Component {
	return []component.Component{
		svc.RedisComponent(s.RedisURL, log, &r.Cache),
		Component(s.storeWith(log), s.NATS, &r.Deps),
		admintoken.Component(&s.Admin, log, &r.Admin),
	}
}
