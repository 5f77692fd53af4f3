package main

import (
	"context"
	"fmt"
	"os"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/shared/natsembed"
	"github.com/volcanion/tracking/shared/provision"
)

// bus is an in-process JetStream server with the event stream provisioned
// and empty, as a deployed reporter sees it with no backlog: its reports
// read the stream's progress (once a second, shared) for dataCompleteUntil
// and ask the store for the writes before that reading, as deployed.
func bus(ctx context.Context) (jetstream.JetStream, func(), error) {
	dir, err := os.MkdirTemp("", "reportbench-nats-")
	if err != nil {
		return nil, nil, err
	}
	ns, err := natsembed.Start(natsembed.Config{DataDir: dir, Name: "reportbench"})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, fmt.Errorf("bus: %w", err)
	}
	stop := func() { ns.Shutdown(); ns.WaitForShutdown(); os.RemoveAll(dir) }
	nc, err := natsembed.Connect(ns, "reportbench")
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("bus: %w", err)
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = provision.Apply(ctx, js, provision.DefaultConfig())
	}
	if err != nil {
		nc.Close()
		stop()
		return nil, nil, fmt.Errorf("bus: %w", err)
	}
	return js, func() { nc.Close(); stop() }, nil
}
