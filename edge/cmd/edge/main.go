// Command edge is the HTTP front door. Every flag can also be set as
// VT_<FLAG>, e.g. VT_ADMIN_TOKENS.
package main

import (
	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/shared/svc"
)

func main() { svc.Main("edge", "127.0.0.1:9101", edge.NewBinary()) }
