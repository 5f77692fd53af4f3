// Command workers persists events from JetStream to storage. Run as many
// processes as needed: they share one durable consumer. Every flag can also
// be set as VT_<FLAG>. It needs the admin tokens the edges take
// (-admin-tokens or -admin-tokens-file) for its dead-letter service.
package main

import (
	"github.com/volcanion/tracking/shared/svc"
	"github.com/volcanion/tracking/workers"
)

func main() { svc.Main("workers", "127.0.0.1:9104", workers.NewBinary()) }
