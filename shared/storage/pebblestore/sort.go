package pebblestore

import (
	"sort"

	"github.com/volcanion/tracking/shared/tenant"
)

func sortKeys(ks []tenant.APIKey) {
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].CreatedAt.Before(ks[j].CreatedAt) })
}
