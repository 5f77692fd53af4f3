// Command registry serves partners, sub-systems and API keys over NATS.
// Every flag can also be set as VT_<FLAG>. It needs the admin tokens the edges
// take (-admin-tokens or -admin-tokens-file): edges forward the caller's token
// and the registry checks it for every admin operation. Run once with -migrate to apply
// the storage schema, and with -provision to create or update the streams and
// the workers' consumer (with credentials that may manage JetStream).
package main

import (
	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/shared/svc"
)

func main() { svc.Main("registry", "127.0.0.1:9102", registry.NewBinary()) }
