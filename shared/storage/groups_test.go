package storage

import (
	"fmt"
	"testing"
)

func TestAddGroupCaps(t *testing.T) {
	g := map[string]int64{}
	for i := range MaxGroups + 5 {
		AddGroup(g, fmt.Sprint("t", i), 2)
	}
	AddGroup(g, "t0", 1) // a named group stays named
	if len(g) != MaxGroups+1 || g[OtherGroup] != 10 || g["t0"] != 3 || g[fmt.Sprint("t", MaxGroups-1)] != 2 {
		t.Fatalf("%d groups, other %d, t0 %d", len(g), g[OtherGroup], g["t0"])
	}
	var sum int64
	for _, n := range g {
		sum += n
	}
	if sum != 2*(MaxGroups+5)+1 {
		t.Fatalf("sum %d", sum)
	}
}

func TestCapGroupsKeepsTheLargest(t *testing.T) {
	g := map[string]int64{OtherGroup: 7}
	for i := range MaxGroups + 3 {
		g[fmt.Sprint("t", i)] = int64(i % 5)
	}
	CapGroups(g)
	if len(g) != MaxGroups+1 {
		t.Fatalf("%d groups", len(g))
	}
	// Three of the smallest (0) go: the names last in order among them.
	var zeros int
	for k, n := range g {
		if n == 0 && k != OtherGroup {
			zeros++
		}
	}
	if want := (MaxGroups+3+4)/5 - 3; zeros != want || g[OtherGroup] != 7 {
		t.Fatalf("%d zeros left (want %d), other %d", zeros, want, g[OtherGroup])
	}
	small := map[string]int64{"a": 1}
	CapGroups(small)
	if len(small) != 1 {
		t.Fatal(small)
	}
}
