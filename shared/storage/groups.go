package storage

import (
	"cmp"
	"slices"

	"github.com/volcanion/tracking/shared/event"
)

// A slot's counts by group (event type, or sub-system) are one value,
// rewritten each time the slot is: a client that makes a new event type of
// each event (a product id in the name) would grow a month's value past
// what a write may hold (16 MiB on Cassandra), and its fold would fail for
// good. So a slot names at most MaxGroups groups, the first it counted;
// events of any other are counted under OtherGroup. The slot's total stays
// exact.
const (
	MaxGroups  = 10_000
	OtherGroup = event.OtherType // which no event may have
)

// AddGroup adds n to group g of groups, or to OtherGroup when g is new and
// groups already names MaxGroups others.
func AddGroup(groups map[string]int64, g string, n int64) {
	if _, ok := groups[g]; !ok {
		named := len(groups)
		if _, ok := groups[OtherGroup]; ok {
			named--
		}
		if named >= MaxGroups {
			g = OtherGroup
		}
	}
	groups[g] += n
}

// CapGroups keeps the MaxGroups largest groups of groups (by count, then
// name) and moves the rest into OtherGroup: a range summed over many slots
// may name more than one slot does.
func CapGroups(groups map[string]int64) {
	named := len(groups)
	if _, ok := groups[OtherGroup]; ok {
		named--
	}
	if named <= MaxGroups {
		return
	}
	type gc struct {
		g string
		n int64
	}
	all := make([]gc, 0, named)
	for g, n := range groups {
		if g != OtherGroup {
			all = append(all, gc{g, n})
		}
	}
	slices.SortFunc(all, func(a, b gc) int {
		if c := cmp.Compare(b.n, a.n); c != 0 {
			return c
		}
		return cmp.Compare(a.g, b.g)
	})
	for _, x := range all[MaxGroups:] {
		groups[OtherGroup] += x.n
		delete(groups, x.g)
	}
}
