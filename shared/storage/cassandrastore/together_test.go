package cassandrastore

import (
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/storage"
)

// Queries are read together only where they differ in their rollup alone:
// the whole range (Only nil) and no slot (Only empty) are not alike.
func TestTogether(t *testing.T) {
	at := time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC)
	q := storage.CountsQuery{Rollup: storage.PartnerTypes, Key: "k", Res: storage.Hour, From: at, To: at.Add(48 * time.Hour), Groups: true}
	o := q
	o.Rollup = storage.PartnerSubSystems
	if !together([]storage.CountsQuery{q, o}) {
		t.Fatal("a partner's two rollups over one range: not together")
	}
	for name, change := range map[string]func(*storage.CountsQuery){
		"same rollup":   func(c *storage.CountsQuery) { c.Rollup = q.Rollup },
		"another key":   func(c *storage.CountsQuery) { c.Key = "j" },
		"another res":   func(c *storage.CountsQuery) { c.Res = storage.Day },
		"another from":  func(c *storage.CountsQuery) { c.From = at.Add(time.Hour) },
		"another to":    func(c *storage.CountsQuery) { c.To = at.Add(time.Hour) },
		"no groups":     func(c *storage.CountsQuery) { c.Groups = false },
		"no slot named": func(c *storage.CountsQuery) { c.Only = storage.Spans{} },
		"some named":    func(c *storage.CountsQuery) { c.Only = storage.Spans{{From: at, To: at.Add(time.Hour)}} },
	} {
		c := o
		change(&c)
		if together([]storage.CountsQuery{q, c}) || together([]storage.CountsQuery{c, q}) {
			t.Errorf("%s: together", name)
		}
	}
}
