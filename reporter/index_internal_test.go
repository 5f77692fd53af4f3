package reporter

import (
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/report/calendar"
)

// A plan's index is the bucket holding an instant, however it finds it:
// by division where the buckets are one length (hours anywhere, UTC days),
// by search where they are not (days across a DST change, months), at
// every bucket's edges, between them and outside the range.
func TestIndexAsSearch(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	from := time.Date(2026, 3, 20, 0, 0, 0, 0, time.UTC) // Europe/Berlin moves on March 29
	for _, tz := range []string{"UTC", "Asia/Kolkata", "Asia/Kathmandu", "Europe/Berlin", "America/St_Johns"} {
		for _, g := range []string{"minute", "hour", "day", "week", "month"} {
			span := 20 * 24 * time.Hour
			if g == "minute" {
				span = 20 * time.Hour
			}
			if g == "month" {
				span = 300 * 24 * time.Hour
			}
			p, err := makePlan(from, from.Add(span), g, tz, calendar.Hour, 400*24*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.list(); err != nil {
				t.Fatal(err)
			}
			uneven := g == "month" || tz == "Europe/Berlin" && (g == "day" || g == "week")
			if uneven != (p.step == 0) {
				t.Errorf("%s %s: step %v", tz, g, p.step)
			}
			search := func(at time.Time) int {
				if at.Before(p.from) || !at.Before(p.to) {
					return -1
				}
				return sort.Search(len(p.buckets), func(i int) bool { return p.buckets[i].After(at) }) - 1
			}
			var ats []time.Time
			for _, b := range append(p.buckets, p.to) {
				ats = append(ats, b, b.Add(-time.Nanosecond), b.Add(time.Nanosecond))
			}
			for range 500 {
				ats = append(ats, p.from.Add(time.Duration(rng.Int64N(int64(p.to.Sub(p.from))))))
			}
			for _, at := range ats {
				if got, want := p.index(at), search(at); got != want {
					t.Fatalf("%s %s: index(%v) = %d, want %d", tz, g, at, got, want)
				}
			}
		}
	}
}
