package calendar

import (
	"errors"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := ParseZone(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestDayStartsFollowTheZone(t *testing.T) {
	for _, c := range []struct {
		zone, at, want string
	}{
		{"UTC", "2026-03-10T20:00:00Z", "2026-03-10T00:00:00Z"},
		{"Asia/Kolkata", "2026-03-10T20:00:00Z", "2026-03-10T18:30:00Z"},     // +05:30
		{"Asia/Kathmandu", "2026-03-10T20:00:00Z", "2026-03-10T18:15:00Z"},   // +05:45
		{"Asia/Ho_Chi_Minh", "2026-03-10T16:59:59Z", "2026-03-09T17:00:00Z"}, // +07:00
		{"America/Los_Angeles", "2026-03-10T06:59:00Z", "2026-03-09T07:00:00Z"},
		{"America/Santiago", "2026-09-06T15:00:00Z", "2026-09-06T04:00:00Z"}, // midnight skipped: the day starts at 01:00 -03
		{"America/Havana", "2026-11-01T16:00:00Z", "2026-11-01T04:00:00Z"},   // 00:00–01:00 happens twice: the first
	} {
		got := Floor(utc(c.at), Day, zone(t, c.zone))
		if !got.Equal(utc(c.want)) {
			t.Errorf("%s: the day of %s starts at %s, want %s", c.zone, c.at, got.UTC().Format(time.RFC3339), c.want)
		}
	}
}

func TestDSTDaysHave23And25Hours(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	for _, c := range []struct {
		day  string
		want time.Duration
	}{{"2026-03-29", 23 * time.Hour}, {"2026-10-25", 25 * time.Hour}, {"2026-06-01", 24 * time.Hour}} {
		start, err := ParseBound(c.day, berlin)
		if err != nil {
			t.Fatal(err)
		}
		if got := Next(start, Day, berlin).Sub(start); got != c.want {
			t.Errorf("%s lasts %s, want %s", c.day, got, c.want)
		}
		hours, err := Buckets(start, Next(start, Day, berlin), Hour, berlin, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(hours) != int(c.want/time.Hour) {
			t.Errorf("%s has %d hour buckets, want %d", c.day, len(hours), c.want/time.Hour)
		}
	}
}

func TestHoursFollowTheWallClock(t *testing.T) {
	kolkata := zone(t, "Asia/Kolkata")
	hours, err := Buckets(utc("2026-03-10T00:00:00Z"), utc("2026-03-10T03:00:00Z"), Hour, kolkata, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"2026-03-09T23:30:00Z", "2026-03-10T00:30:00Z", "2026-03-10T01:30:00Z", "2026-03-10T02:30:00Z"}
	if len(hours) != len(want) {
		t.Fatalf("%d hour buckets, want %d: %v", len(hours), len(want), hours)
	}
	for i, w := range want {
		if !hours[i].Equal(utc(w)) {
			t.Errorf("bucket %d starts %s, want %s", i, hours[i].UTC().Format(time.RFC3339), w)
		}
	}
}

func TestWeeksStartOnMonday(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	got := Floor(utc("2026-03-01T12:00:00Z"), Week, berlin) // a Sunday
	if w := got.In(berlin); w.Weekday() != time.Monday || w.Format(time.DateOnly) != "2026-02-23" || w.Hour() != 0 {
		t.Fatalf("the week of Sunday 2026-03-01 starts %s", w)
	}
	if n := Next(got, Week, berlin).In(berlin); n.Format(time.DateOnly) != "2026-03-02" {
		t.Fatalf("the next week starts %s", n)
	}
	// The week holding the spring DST change lasts 167 hours.
	start := Floor(utc("2026-03-29T12:00:00Z"), Week, berlin)
	if d := Next(start, Week, berlin).Sub(start); d != 167*time.Hour {
		t.Fatalf("the DST week lasts %s", d)
	}
}

func TestMonths(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	got := Floor(utc("2026-02-15T12:00:00Z"), Month, berlin)
	if !got.Equal(utc("2026-01-31T23:00:00Z")) {
		t.Fatalf("February 2026 in Berlin starts %s", got.UTC())
	}
	months, err := Buckets(got, utc("2027-01-01T00:00:00Z"), Month, berlin, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(months) != 12 { // February 2026 to January 2027, which starts at 2026-12-31T23:00Z
		t.Fatalf("%d months", len(months))
	}
}

func TestBucketLimit(t *testing.T) {
	_, err := Buckets(utc("2026-03-01T00:00:00Z"), utc("2026-03-02T02:00:00Z"), Minute, time.UTC, 1500)
	if !errors.Is(err, ErrTooManyBuckets) {
		t.Fatalf("26 hours of minutes: %v", err)
	}
	b, err := Buckets(utc("2026-03-01T00:00:00Z"), utc("2026-03-02T01:00:00Z"), Minute, time.UTC, 1500)
	if err != nil || len(b) != 1500 {
		t.Fatalf("25 hours of minutes: %d, %v", len(b), err)
	}
}

func TestParsing(t *testing.T) {
	for _, bad := range []string{"", "Local", "/etc/localtime", "../../etc/passwd", "Mars/Olympus", "+05:30",
		"right/Europe/Berlin", "Europe/./Berlin", "Europe//Berlin", "Europe/Berlin/", "localtime", "posixrules", "posix/Europe/Berlin"} {
		if _, err := ParseZone(bad); err == nil {
			t.Errorf("zone %q accepted", bad)
		}
	}
	// A long name is refused without being echoed; the longest real one passes.
	long := strings.Repeat("Europe/", 500)
	if _, err := ParseZone(long); err == nil || len(err.Error()) > 200 || strings.Contains(err.Error(), "Europe") {
		t.Errorf("a %d-character zone: %v", len(long), err)
	}
	if _, err := ParseZone("America/Argentina/ComodRivadavia"); err != nil {
		t.Errorf("the longest IANA name: %v", err)
	}
	if _, err := ParseGranularity("fortnight"); err == nil {
		t.Error("granularity fortnight accepted")
	}
	kolkata := zone(t, "Asia/Kolkata")
	d, err := ParseBound("2026-05-01", kolkata)
	if err != nil || !d.Equal(utc("2026-04-30T18:30:00Z")) {
		t.Fatalf("2026-05-01 in Kolkata: %s %v", d.UTC(), err)
	}
	i, err := ParseBound("2026-05-01T10:00:00+02:00", kolkata)
	if err != nil || !i.Equal(utc("2026-05-01T08:00:00Z")) {
		t.Fatalf("an instant: %s %v", i.UTC(), err)
	}
	if _, err := ParseBound("yesterday", kolkata); err == nil {
		t.Fatal("yesterday accepted")
	}
	if l, err := ParseBound("2026-05-01t10:00:00.5z", kolkata); err != nil || !l.Equal(utc("2026-05-01T10:00:00.5Z")) {
		t.Fatalf("lower-case t and z: %s %v", l.UTC(), err)
	}
	// An unescaped + arrives as a space: told how to send it, not accepted.
	if _, err := ParseBound("2026-05-01T10:00:00 07:00", kolkata); err == nil || !strings.Contains(err.Error(), "%2B") {
		t.Fatalf("an offset's + sent as a space: %v", err)
	}
	if _, err := ParseBound("2026-05-01 10:00", kolkata); err == nil || strings.Contains(err.Error(), "%2B") {
		t.Fatalf("a space that is no offset's +: %v", err)
	}
}

// For random instants in zones with odd offsets and DST rules, every
// granularity's bucket holds the instant, starts on the zone's wall clock,
// and days, weeks and months start at the first instant of their date.
func TestBucketInvariants(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
		"America/Santiago", "America/Havana", "Pacific/Chatham", "Asia/Tehran", "Africa/Casablanca", "Pacific/Apia"}
	r := rand.New(rand.NewPCG(1, 2))
	lo, hi := utc("2000-01-01T00:00:00Z").Unix(), utc("2040-01-01T00:00:00Z").Unix()
	for _, name := range zones {
		loc := zone(t, name)
		for range 3000 {
			at := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9))
			for _, g := range Granularities {
				start := Floor(at, g, loc)
				next := Next(start, g, loc)
				if start.After(at) || !next.After(at) {
					t.Fatalf("%s %s: %s not in [%s, %s)", name, g, at, start, next)
				}
				if !Floor(next, g, loc).Equal(next) {
					t.Fatalf("%s %s: the bucket after %s does not start at %s", name, g, start, next)
				}
				w := start.In(loc)
				switch g {
				case Minute:
					if w.Second() != 0 || w.Nanosecond() != 0 {
						t.Fatalf("%s minute bucket at %s", name, w)
					}
				case Day, Week, Month:
					before := start.Add(-time.Nanosecond).In(loc)
					if before.Format(time.DateOnly) == w.Format(time.DateOnly) {
						t.Fatalf("%s %s bucket %s is not the first instant of its date", name, g, w)
					}
					if g == Week && w.Weekday() != time.Monday || g == Month && w.Day() != 1 {
						t.Fatalf("%s %s bucket starts %s", name, g, w)
					}
				}
			}
		}
	}
}

// Australia/Lord_Howe moves its clock by half an hour. Hour buckets still
// follow the wall clock: every instant of a bucket has the bucket's wall
// hour and offset, a bucket starts on the hour unless the offset changes
// there, and Floor agrees with Buckets. (Found by review: buckets labelled
// 01:30 held instants of hour 01 of the other offset.)
func TestHalfHourDSTHours(t *testing.T) {
	loc, _ := time.LoadLocation("Australia/Lord_Howe")
	for _, from := range []time.Time{
		time.Date(2025, 4, 5, 12, 0, 0, 0, time.UTC),  // DST ends: 02:00 +11 -> 01:30 +10:30 at 15:00 UTC
		time.Date(2025, 10, 4, 12, 0, 0, 0, time.UTC), // DST starts: 02:00 +10:30 -> 02:30 +11 at 15:30 UTC
	} {
		to := from.Add(6 * time.Hour)
		for _, g := range []Granularity{Hour, Minute} {
			b, err := Buckets(from, to, g, loc, 1000)
			if err != nil {
				t.Fatal(err)
			}
			key := func(x time.Time) string {
				if g == Hour {
					return x.In(loc).Format("2006-01-02T15 -07:00")
				}
				return x.In(loc).Format("2006-01-02T15:04 -07:00")
			}
			for i, s := range b {
				_, off := s.In(loc).Zone()
				_, before := s.Add(-time.Nanosecond).In(loc).Zone()
				if g == Hour && s.In(loc).Minute() != 0 && off == before {
					t.Errorf("hour bucket starts at %s, neither on the hour nor at an offset change", s.In(loc).Format(time.RFC3339))
				}
				if i > 0 && !s.After(b[i-1]) {
					t.Fatalf("buckets out of order at %d", i)
				}
			}
			for x := from; x.Before(to); x = x.Add(time.Minute) {
				i := sort.Search(len(b), func(i int) bool { return b[i].After(x) }) - 1
				if key(x) != key(b[i]) {
					t.Errorf("%s %s (wall %s) is in the bucket of %s", g, x.Format("15:04Z"), key(x), key(b[i]))
				}
				if f := Floor(x, g, loc); !f.Equal(b[i]) {
					t.Errorf("%s %s: Buckets puts it in %s, Floor says %s", g, x.Format("15:04Z"), key(b[i]), key(f))
				}
			}
		}
	}
	// Widening a range never narrows it.
	to := time.Date(2025, 4, 5, 14, 45, 0, 0, time.UTC) // 01:45 +11, the day DST ends
	if end := Next(Floor(to.Add(-time.Nanosecond), Hour, loc), Hour, loc); end.Before(to) {
		t.Errorf("to %s widened to %s: before to", to.Format(time.RFC3339), end.Format(time.RFC3339))
	}
}

// A date is the day's first instant in the zone, also where a DST change
// skips or doubles midnight, for every date of 15 years in zones that did.
// (Found by review: 2025-09-07 in America/Santiago parsed as 23:00 the day
// before.)
func TestParseBoundMidnights(t *testing.T) {
	zones := []string{"America/Santiago", "America/Asuncion", "America/Havana", "Asia/Beirut", "Asia/Gaza", "Africa/Cairo",
		"Asia/Damascus", "Asia/Amman", "America/Sao_Paulo", "Asia/Tehran", "America/Nuuk", "Atlantic/Azores", "America/Scoresbysund",
		"Pacific/Apia", "America/Campo_Grande", "America/Cuiaba", "Asia/Dhaka", "Europe/Lisbon", "America/Mexico_City", "Africa/Casablanca"}
	for _, z := range zones {
		loc, err := time.LoadLocation(z)
		if err != nil {
			t.Fatal(z, err)
		}
		for d := time.Date(2015, 1, 1, 12, 0, 0, 0, time.UTC); d.Year() < 2030; d = d.AddDate(0, 0, 1) {
			s := d.Format(time.DateOnly)
			got, err := ParseBound(s, loc)
			if err != nil {
				t.Fatal(err)
			}
			if got.In(loc).Format(time.DateOnly) != s || got.Add(-time.Nanosecond).In(loc).Format(time.DateOnly) == s {
				t.Fatalf("%s %s: ParseBound %s is not the day's first instant", z, s, got.In(loc).Format(time.RFC3339))
			}
		}
	}
	santiago, _ := time.LoadLocation("America/Santiago")
	if got, _ := ParseBound("2025-09-07", santiago); !got.Equal(time.Date(2025, 9, 7, 4, 0, 0, 0, time.UTC)) {
		t.Fatalf("2025-09-07 in Santiago: %s, want 01:00-03:00", got.In(santiago).Format(time.RFC3339))
	}
}

// Buckets steps minutes and hours by their length where the zone's offset
// holds over the range: the same buckets as stepping with Next, in every
// kind of zone (DST, half-hour offsets, half-hour DST, offsets dropped or
// changed for good), over ranges across a change and not, from any
// instant. Also what ErrTooManyBuckets says, either way.
func TestBucketsSteppedAsNext(t *testing.T) {
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe",
		"America/Santiago", "America/Havana", "Pacific/Chatham", "Asia/Tehran", "Africa/Casablanca", "Pacific/Apia", "Africa/Monrovia"}
	byNext := func(from, to time.Time, g Granularity, loc *time.Location, max int) ([]time.Time, error) {
		var out []time.Time
		for b := Floor(from, g, loc); b.Before(to); b = Next(b, g, loc) {
			if len(out) == max {
				return nil, ErrTooManyBuckets
			}
			out = append(out, b)
		}
		return out, nil
	}
	r := rand.New(rand.NewPCG(3, 4))
	lo, hi := utc("1968-01-01T00:00:00Z").Unix(), utc("2040-01-01T00:00:00Z").Unix()
	stepped := 0
	for _, name := range zones {
		loc := zone(t, name)
		for range 400 {
			from := time.Unix(lo+r.Int64N(hi-lo), r.Int64N(1e9)*r.Int64N(2))
			for _, g := range []Granularity{Minute, Hour} {
				span := time.Duration(r.Int64N(int64(1500 * time.Hour)))
				if g == Minute {
					span /= 60
				}
				to := from.Add(span + time.Second)
				got, gerr := Buckets(from, to, g, loc, 1500)
				want, werr := byNext(from, to, g, loc, 1500)
				if (gerr != nil) != (werr != nil) || gerr != nil && !errors.Is(gerr, ErrTooManyBuckets) {
					t.Fatalf("%s %s [%s, %s): error %v, stepping with Next %v", name, g, from, to, gerr, werr)
				}
				if len(got) != len(want) {
					t.Fatalf("%s %s [%s, %s): %d buckets, stepping with Next %d", name, g, from, to, len(got), len(want))
				}
				for i := range got {
					if !got[i].Equal(want[i]) || got[i].Location() != want[i].Location() {
						t.Fatalf("%s %s [%s, %s): bucket %d is %s, stepping with Next %s", name, g, from, to, i, got[i], want[i])
					}
				}
				if _, end := Floor(from, g, loc).ZoneBounds(); end.IsZero() || !end.Before(to) {
					stepped++
				}
			}
		}
	}
	// And from around each offset change: a bucket cut at one (Lord
	// Howe's half hour, Monrovia's 44 min 30 s) is not on the wall clock's
	// step.
	for _, name := range zones {
		loc := zone(t, name)
		at := time.Date(1968, 1, 1, 0, 0, 0, 0, loc)
		for n := 0; n < 60; n++ {
			_, c := at.ZoneBounds()
			if c.IsZero() || c.Year() > 2040 {
				break
			}
			at = c
			for _, d := range []time.Duration{-time.Hour, -time.Nanosecond, 0, time.Nanosecond, 17 * time.Minute, 45 * time.Minute} {
				for _, g := range []Granularity{Minute, Hour} {
					for _, span := range []time.Duration{2 * time.Hour, 20 * time.Hour} {
						from, to := c.Add(d), c.Add(d+span)
						got, gerr := Buckets(from, to, g, loc, 1500)
						want, werr := byNext(from, to, g, loc, 1500)
						if (gerr != nil) != (werr != nil) || len(got) != len(want) {
							t.Fatalf("%s %s [%s, %s): %d buckets (%v), stepping with Next %d (%v)", name, g, from, to, len(got), gerr, len(want), werr)
						}
						for i := range got {
							if !got[i].Equal(want[i]) {
								t.Fatalf("%s %s [%s, %s): bucket %d is %s, stepping with Next %s", name, g, from, to, i, got[i], want[i])
							}
						}
					}
				}
			}
		}
	}
	if stepped < 1000 {
		t.Fatalf("only %d ranges in one offset: the stepped path is barely tested", stepped)
	}
}
