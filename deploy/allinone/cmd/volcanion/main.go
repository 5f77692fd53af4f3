// Command volcanion runs the whole tracking system in one process on the
// embedded default. Every flag can also be set as VT_<FLAG> (e.g. VT_DATA_DIR).
package main

import (
	"github.com/volcanion/tracking/deploy/allinone"
	"github.com/volcanion/tracking/shared/svc"
)

func main() { svc.Main("volcanion", "127.0.0.1:9464", allinone.NewBinary()) }
