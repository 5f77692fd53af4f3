// Package svcstore opens what a storage-backed service (registry, reporter,
// workers) needs at start. It is apart from package svc so that the edge,
// which stores nothing, links no storage driver.
package svcstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/component"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/storage/backend"
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
