// Package calendar cuts a time range into the buckets of a report: minutes,
// hours, days, ISO weeks or months, in an IANA time zone. Bucket
// boundaries follow the zone's wall clock: a day in Asia/Kolkata starts at
// 18:30 UTC, one in Asia/Kathmandu at 18:15 UTC, and Europe/Berlin has days
// of 23 and 25 hours at its DST changes. Weeks start on Monday (ISO 8601).
package calendar

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Granularity is the size of a report's buckets.
type Granularity string

const (
	Minute Granularity = "minute"
	Hour   Granularity = "hour"
	Day    Granularity = "day"
	Week   Granularity = "week"
	Month  Granularity = "month"
)

// Granularities lists every granularity, finest first.
var Granularities = []Granularity{Minute, Hour, Day, Week, Month}

// ParseGranularity reads a granularity name.
func ParseGranularity(s string) (Granularity, error) {
	for _, g := range Granularities {
		if s == string(g) {
			return g, nil
		}
	}
	names := make([]string, len(Granularities))
	for i, g := range Granularities {
		names[i] = string(g)
	}
	return "", fmt.Errorf("must be one of %s", strings.Join(names, ", "))
}

// maxZoneName bounds a zone name a report accepts.
const maxZoneName = 64

// ParseZone reads an IANA zone name ("UTC", "Asia/Ho_Chi_Minh"). Fixed
// offsets and the machine's local zone are refused: a report's buckets
// must mean the same wherever it is computed.
func ParseZone(name string) (*time.Location, error) {
	// Not echoed: the longest IANA name has 32 bytes, and an error
	// must not carry back whatever a client sent.
	if len(name) > maxZoneName {
		return nil, fmt.Errorf("is longer than %d bytes: no IANA time zone name is (e.g. Asia/Ho_Chi_Minh)", maxZoneName)
	}
	// Files of the zone directory that are not zones: right/… (with leap
	// seconds, 27 s off civil time), posix/… (copies, cached and echoed
	// under a second name), localtime (the host's own zone: two reporters
	// could disagree) and posixrules. A name that is not its own clean path
	// (Europe/./Berlin) would be echoed back as the zone's name.
	if name == "" || name == "Local" || name == "localtime" || name == "posixrules" || strings.HasPrefix(name, "/") ||
		strings.Contains(name, "..") || strings.HasPrefix(name, "right/") || strings.HasPrefix(name, "posix/") || path.Clean(name) != name {
		return nil, errors.New("must be an IANA time zone name, e.g. Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q: use an IANA name, e.g. Asia/Ho_Chi_Minh", name)
	}
	return loc, nil
}

// ParseBound reads a range bound: an RFC 3339 instant, or a date
// (YYYY-MM-DD), which is midnight in loc (or the first instant of that day
// where midnight does not exist).
func ParseBound(s string, loc *time.Location) (time.Time, error) {
	// RFC 3339 (§5.6) allows a lower-case t and z; Go's layout does not.
	if t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s)); err == nil {
		return t, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		// An offset's + sent unescaped reads as a space.
		if i := strings.LastIndexByte(s, ' '); i > 0 {
			if _, err := time.Parse(time.RFC3339Nano, strings.ToUpper(s[:i]+"+"+s[i+1:])); err == nil {
				return time.Time{}, errors.New("has a space where its offset's + should be (a + in a query string means a space): send + as %2B, e.g. 2026-05-01T00:00:00%2B07:00")
			}
		}
		return time.Time{}, errors.New("must be an RFC 3339 instant (2026-05-01T00:00:00Z) or a date (2026-05-01)")
	}
	// The day's first instant in loc, which is not always 00:00 (a DST
	// change skips midnight in America/Santiago).
	return midnight(d.Year(), d.Month(), d.Day(), loc), nil
}

// Floor is the start of the bucket holding t.
func Floor(t time.Time, g Granularity, loc *time.Location) time.Time {
	t = t.In(loc)
	switch g {
	case Minute:
		return floorClock(t, time.Minute, loc)
	case Hour:
		return floorClock(t, time.Hour, loc)
	case Day:
		return midnight(t.Year(), t.Month(), t.Day(), loc)
	case Week:
		back := (int(t.Weekday()) + 6) % 7 // days since Monday
		return midnight(t.Year(), t.Month(), t.Day()-back, loc)
	case Month:
		return midnight(t.Year(), t.Month(), 1, loc)
	}
	panic("calendar: unknown granularity " + string(g))
}

// fixedStep is the length of g's buckets where the zone's offset does not
// change (0: days and longer, which Buckets steps by the calendar).
func fixedStep(g Granularity) time.Duration {
	switch g {
	case Minute:
		return time.Minute
	case Hour:
		return time.Hour
	}
	return 0
}

// Next is the start of the bucket after the one starting at start.
func Next(start time.Time, g Granularity, loc *time.Location) time.Time {
	t := start.In(loc)
	switch g {
	case Minute, Hour:
		step := time.Minute
		if g == Hour {
			step = time.Hour
		}
		return nextClock(start, step, loc)
	case Day:
		return midnight(t.Year(), t.Month(), t.Day()+1, loc)
	case Week:
		return midnight(t.Year(), t.Month(), t.Day()+7, loc)
	case Month:
		return midnight(t.Year(), t.Month()+1, 1, loc)
	}
	panic("calendar: unknown granularity " + string(g))
}

// Minute and hour buckets follow the wall clock: a bucket is a span in
// which the clock's hour (or minute) and the zone's offset stay the same.
// So Berlin's doubled hour in October is two buckets (02:00+02:00 and
// 02:00+01:00), and where a zone moves by half an hour
// (Australia/Lord_Howe) the hour that straddles the change is cut at it:
// 01:00+11:00 to the change, then 01:30+10:30 to 02:00.

// floorWall truncates t to a multiple of d on the wall clock of t's offset.
func floorWall(t time.Time, d time.Duration) time.Time {
	_, off := t.Zone()
	o := time.Duration(off) * time.Second
	return t.Add(o).Truncate(d).Add(-o)
}

func offsetOf(t time.Time, loc *time.Location) int {
	_, off := t.In(loc).Zone()
	return off
}

// floorClock is the start of t's minute or hour bucket: the wall clock's
// whole minute or hour in t's offset, or the offset change after it.
func floorClock(t time.Time, d time.Duration, loc *time.Location) time.Time {
	t = t.In(loc)
	f := floorWall(t, d)
	off := offsetOf(t, loc)
	if offsetOf(f, loc) == off {
		return f
	}
	// The offset changed in (f, t]: the bucket starts at that change.
	return offsetChange(f, t, loc)
}

// offsetChange is the first instant in (lo, hi] whose offset is hi's,
// when lo's differs (one change between them).
func offsetChange(lo, hi time.Time, loc *time.Location) time.Time {
	off := offsetOf(hi, loc)
	for hi.Sub(lo) > time.Nanosecond {
		mid := lo.Add(hi.Sub(lo) / 2)
		if offsetOf(mid, loc) == off {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.In(loc)
}

// nextClock is the start of the minute or hour bucket after the one
// starting at start: the next whole minute or hour of start's offset, or an
// offset change before it.
func nextClock(start time.Time, d time.Duration, loc *time.Location) time.Time {
	start = start.In(loc)
	n := floorWall(start, d).Add(d)
	off := offsetOf(start, loc)
	if offsetOf(n.Add(-time.Nanosecond), loc) == off {
		return n.In(loc)
	}
	return offsetChange(start, n.Add(-time.Nanosecond), loc)
}

// midnight is the first instant of the date (y, m, d) in loc: usually
// 00:00, but where a DST change skips midnight (America/Santiago) the day
// starts at 01:00, and where 00:00 happens twice (America/Havana) it is the
// first.
func midnight(y int, m time.Month, d int, loc *time.Location) time.Time {
	t := time.Date(y, m, d, 0, 0, 0, 0, loc)
	date := dateOf(time.Date(y, m, d, 12, 0, 0, 0, time.UTC))
	if dateOf(t.In(loc)) == date && dateOf(t.Add(-time.Nanosecond).In(loc)) != date {
		return t
	}
	// time.Date guesses for a wall time that does not exist or exists
	// twice: search for the first instant whose date is date (the date
	// only moves forward across a day, bar a clock going back over
	// midnight, where this finds one of the two).
	lo, hi := t.Add(-26*time.Hour), t.Add(26*time.Hour)
	for hi.Sub(lo) > time.Nanosecond {
		mid := lo.Add(hi.Sub(lo) / 2)
		if dateOf(mid.In(loc)) >= date {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// dateOf is t's wall-clock date as a comparable number.
func dateOf(t time.Time) int {
	y, m, d := t.Date()
	return y*10000 + int(m)*100 + d
}

// ErrTooManyBuckets is returned when a range is too fine for its length.
var ErrTooManyBuckets = errors.New("calendar: too many buckets")

// Buckets returns the starts of every bucket that overlaps [from, to), the
// first one at or before from, at most max of them (ErrTooManyBuckets).
func Buckets(from, to time.Time, g Granularity, loc *time.Location, max int) ([]time.Time, error) {
	if !from.Before(to) {
		return nil, errors.New("calendar: the range is empty")
	}
	var out []time.Time
	b := Floor(from, g, loc)
	if step := fixedStep(g); step > 0 {
		// Where the zone's offset holds over the whole range (UTC,
		// Asia/Kolkata, a month of Berlin's summer), each bucket is the one
		// before plus the step: what Next gives, without a zone lookup a
		// bucket (a tenth of an hourly report's CPU went here).
		// b must be on the wall clock's step too: a bucket cut at an
		// offset change (Australia/Lord_Howe's half hour) is not.
		if _, end := b.ZoneBounds(); (end.IsZero() || !end.Before(to)) && floorWall(b, step).Equal(b) {
			n := int((to.Sub(b) + step - 1) / step)
			if n > max {
				return nil, fmt.Errorf("%w: more than %d %ss", ErrTooManyBuckets, max, g)
			}
			out = make([]time.Time, n)
			for i := range out {
				out[i] = b.Add(time.Duration(i) * step)
			}
			return out, nil
		}
	}
	for ; b.Before(to); b = Next(b, g, loc) {
		if len(out) == max {
			return nil, fmt.Errorf("%w: more than %d %ss", ErrTooManyBuckets, max, g)
		}
		out = append(out, b)
	}
	return out, nil
}
