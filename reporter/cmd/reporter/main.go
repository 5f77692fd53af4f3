// Command reporter answers report queries over NATS. Every flag can also be
// set as VT_<FLAG>. It needs the admin tokens the edges take (-admin-tokens
// or -admin-tokens-file): edges forward the caller's admin token, or the
// caller's partner API key, and the reporter checks it for every query.
package main

import (
	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/svc"
)

func main() { svc.Main("reporter", "127.0.0.1:9103", reporter.NewBinary()) }
