package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
)

// Half hours and six hours were added to the resolutions after keyspaces
// held counts: the folds of the releases before wrote neither, so in a
// keyspace upgraded across them their rows hold every event only in slots
// after every slot those folds counted (layout row "resolutions-6",
// written once by Migrate, which runs with the old workers stopped). A
// read of their slots before that sums them from the resolution that tiles
// them (quarters, hours): the same figures, more rows. A new keyspace
// keeps them from the start.
//
// Half hours moved from daily partitions to monthly ones one release
// later: the rows of a keyspace migrated before that (layout row
// "resolutions-6") sit in partitions that are no longer read, so version 13
// marks since again under a new name, and every half hour before it is
// summed from quarters (TestMonthlyHalfHours).
const (
	layoutVersion           = 12
	monthlyHalfHoursVersion = 13
	resolutionsName         = "resolutions-6m"
	// Hours packed a day to a row (pack.go) came one release later: their
	// packs hold every hour from since (layout row "packs-hour").
	packsVersion = 15
	packsName    = "packs-hour"
	// Hours from half past came one release later still (layout row
	// "half-past-hours"); before it they are summed from half hours. Their
	// packs are written with them, so they need no since of their own.
	halfPastVersion = 16
	halfPastName    = "half-past-hours"
	// Weeks came with them (layout row "weeks"); before it they are summed
	// from days.
	weeksVersion = 17
	weeksName    = "weeks"
	// The users of each event type (table typed_users, migration 20) came
	// later still (layout row "typed-users"); before it they are not known,
	// and a read of them answers errors.ErrUnsupported.
	typedVersion = 21
	typedName    = "typed-users"
	// One release later their partitions spanned less time (spanOf in
	// rollups.go): the rows written before sit in partitions no longer
	// read (but quarter hours' and weeks', whose spans did not change), so
	// version 22 marks since again under a new name (layout row
	// "typed-users-2"), and the users of each type are not known before it.
	typedSpansVersion = 22
	typedSpansName    = "typed-users-2"
	// Readers seal a day's pack into a blob (seal.go, migration 23) from
	// the layout row "sealed-packs" on: a reader of an earlier release
	// reads the map alone and would find a sealed day empty, so in a
	// keyspace upgraded with data the mark is set past sinceMargin, by
	// when every reporter runs this release.
	sealVersion = 24
	sealName    = "sealed-packs"
	// sinceMargin: a fold before the upgrade counted no event more than this
	// far in the future (the edge's default limit is 10 minutes).
	sinceMargin = 24 * time.Hour
)

// markResolutionsAt is markResolutions as a step of Migrate.
func markResolutionsAt(now time.Time) func(context.Context, *gocql.Session, string) error {
	return markLayoutAt(now, resolutionsName)
}

// markLayoutAt records since when the layout named is complete, as a step
// of Migrate (markResolutions).
func markLayoutAt(now time.Time, name string) func(context.Context, *gocql.Session, string) error {
	return func(ctx context.Context, s *gocql.Session, keyspace string) error {
		return markLayout(ctx, s, keyspace, now, name)
	}
}

// markResolutions records since when the later resolutions are complete:
// from the start in a keyspace that holds no counts yet, else from the six
// hours after now plus sinceMargin, or after the last day any count is
// kept for if that is later (an event far in the future, which an internal
// publisher may send, counted by an older release). It never moves a
// recorded time.
func markResolutions(ctx context.Context, s *gocql.Session, keyspace string, now time.Time) error {
	return markLayout(ctx, s, keyspace, now, resolutionsName)
}

// markLayout is markResolutions for the layout named.
func markLayout(ctx context.Context, s *gocql.Session, keyspace string, now time.Time, name string) error {
	since := time.Unix(0, 0).UTC()
	var kind int8
	err := s.Query(fmt.Sprintf("SELECT kind FROM %s.totals LIMIT 1", keyspace)).WithContext(ctx).Scan(&kind)
	if errors.Is(err, gocql.ErrNotFound) {
		// No totals, but maybe claims and manifests an older release wrote
		// and no fold has applied yet: the users of each type are not in
		// them, so that keyspace is not new either.
		var partner string
		err = s.Query(fmt.Sprintf("SELECT partner_id FROM %s.claims LIMIT 1", keyspace)).WithContext(ctx).Scan(&partner)
	}
	switch {
	case err == nil:
		since = now.UTC().Add(sinceMargin).Truncate(6 * time.Hour).Add(6 * time.Hour)
		last, err := lastCountedDay(ctx, s, keyspace)
		if err != nil {
			return err
		}
		if after := last.AddDate(0, 0, 1); after.After(since) {
			since = after
		}
	case !errors.Is(err, gocql.ErrNotFound):
		return fmt.Errorf("cassandrastore: is the keyspace new: %w", err)
	}
	_, err = s.Query(fmt.Sprintf("INSERT INTO %s.layout (name, since) VALUES (?, ?) IF NOT EXISTS", keyspace), name, since).
		WithContext(ctx).MapScanCAS(map[string]any{})
	if err != nil {
		return fmt.Errorf("cassandrastore: record the resolutions' start: %w", err)
	}
	return nil
}

// lastCountedDay is the last UTC day with a minute's counts or users, from
// the partitions' keys alone (a scan of the keyspace's partitions, once).
func lastCountedDay(ctx context.Context, s *gocql.Session, keyspace string) (time.Time, error) {
	iter := s.Query(fmt.Sprintf("SELECT DISTINCT kind, a, key, res, period FROM %s.totals", keyspace)).WithContext(ctx).PageSize(5000).Iter()
	var kind, a, res int8
	var key string
	var period, last int
	for iter.Scan(&kind, &a, &key, &res, &period) {
		if storage.Res(res) == storage.Minute {
			last = max(last, period)
		}
	}
	if err := iter.Close(); err != nil {
		return time.Time{}, fmt.Errorf("cassandrastore: the last day counted: %w", err)
	}
	return time.Date(last/10000, time.Month(last/100%100), last%100, 0, 0, 0, 0, time.UTC), nil
}

// SetResolutionsSince records since when half hours and six hours are
// complete in keyspace, as an upgrade from a release without them would:
// for tests of a keyspace upgraded across them (Migrate records it itself).
func SetResolutionsSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, resolutionsName, since)
}

// SetPacksSince records since when the hours' packs are complete in
// keyspace: for tests of a keyspace upgraded across them, and for a data
// set whose packs were all written (PackCountHours, PackUserHours).
func SetPacksSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, packsName, since)
}

// SetSealSince records since when readers seal days' packs (seal.go): for
// a keyspace whose every reporter runs this release before the mark
// Migrate set (a benchmark's), and for tests.
func SetSealSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, sealName, since)
}

// SetHalfPastSince records since when hours from half past are complete
// in keyspace: for tests of a keyspace upgraded across them, and for a data
// set whose earlier ones were all written (DeriveHalfPastHours).
func SetHalfPastSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, halfPastName, since)
}

// SetWeeksSince is SetHalfPastSince for weeks (DeriveSlots).
func SetWeeksSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, weeksName, since)
}

// SetTypedUsersSince records since when the users of each event type are
// kept (typed_users); a read of them from before answers
// errors.ErrUnsupported. Nothing derives them: they are not in the rows.
func SetTypedUsersSince(ctx context.Context, hosts []string, keyspace string, since time.Time) error {
	return setLayoutSince(ctx, hosts, keyspace, typedSpansName, since)
}

func setLayoutSince(ctx context.Context, hosts []string, keyspace, name string, since time.Time) error {
	cluster := gocql.NewCluster(hosts...)
	cluster.Keyspace = keyspace
	s, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("cassandrastore: connect %v: %w", hosts, err)
	}
	defer s.Close()
	return s.Query("UPDATE layout SET since = ? WHERE name = ?", since, name).WithContext(ctx).Exec()
}

// readSince reads the time markResolutions recorded; without one (a
// keyspace not migrated to this release), the later resolutions are
// always summed.
func readSince(ctx context.Context, s *gocql.Session, name string) (time.Time, error) {
	var since time.Time
	err := s.Query("SELECT since FROM layout WHERE name = ?", name).WithContext(ctx).Scan(&since)
	if errors.Is(err, gocql.ErrNotFound) {
		return time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC), nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("cassandrastore: read the layout (run the migration of this release first): %w", err)
	}
	return since.UTC(), nil
}

// derived tells whether a read of res from from to to starts before res is
// complete: then the slots before cut (since, or the end of the slot
// holding to) are summed from fine.
func (st *Store) derived(res storage.Res, from, to time.Time) (fine storage.Res, cut time.Time, ok bool) {
	since, later := st.sinceOf(res)
	if !later || !res.Slot(from).Before(since) {
		return 0, time.Time{}, false
	}
	fine, _ = res.Tiles()
	cut = res.Slot(to)
	if cut.Before(to) {
		cut = cut.Add(res.Duration())
	}
	if since.Before(cut) {
		cut = since
	}
	return fine, cut, true
}

// sinceOf is since when res's rows are complete, for the resolutions
// added after keyspaces held counts (later true).
func (st *Store) sinceOf(res storage.Res) (since time.Time, later bool) {
	switch res {
	case storage.HalfHour, storage.SixHours:
		return st.since, true
	case storage.HalfPastHour:
		// On a slot's start (since is on the hour): the slot holding
		// since is summed, its rows not holding the events before since.
		return storage.HalfPastHour.Slot(st.halfPastSince.Add(time.Hour - 1)), true
	case storage.Week:
		return storage.Week.Slot(st.weekSince.Add(storage.Week.Duration() - 1)), true
	}
	return time.Time{}, false
}

// derivedCounts sums the slots of q.Res before cut from fine's.
func (st *Store) derivedCounts(ctx context.Context, q storage.CountsQuery, fine storage.Res, cut time.Time) ([]storage.Slot, error) {
	fq := q
	fq.Res, fq.From, fq.To, fq.Only = fine, q.Res.Slot(q.From), cut, fineOnly(q.Res, q.Only, q.From, cut)
	fs, err := st.Counts(ctx, fq)
	if err != nil {
		return nil, err
	}
	out := []storage.Slot{}
	for _, s := range fs { // in time order
		start := q.Res.Slot(s.Start)
		if n := len(out); n == 0 || !out[n-1].Start.Equal(start) {
			var groups map[string]int64
			if s.Groups != nil {
				groups = map[string]int64{}
			}
			out = append(out, storage.Slot{Start: start, Groups: groups})
		}
		last := &out[len(out)-1]
		last.Total += s.Total
		for g, n := range s.Groups {
			last.Groups[g] += n
		}
	}
	if cut.Before(q.To) {
		rest := q
		rest.From = cut
		more, err := st.Counts(ctx, rest)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

// derivedUsers merges the sketches of q.Res's slots before cut from fine's.
func (st *Store) derivedUsers(ctx context.Context, q storage.UsersQuery, fine storage.Res, cut time.Time, fn func(time.Time, []byte) error) error {
	fq := q
	fq.Res, fq.From, fq.To, fq.Only = fine, q.Res.Slot(q.From), cut, fineOnly(q.Res, q.Only, q.From, cut)
	var starts []time.Time
	sketches := map[time.Time]*hll.Sketch{}
	err := st.Users(ctx, fq, func(t time.Time, b []byte) error {
		start := q.Res.Slot(t)
		sk := sketches[start]
		if sk == nil {
			sk = &hll.Sketch{}
			sketches[start] = sk
			starts = append(starts, start)
		}
		return sk.MergeBinary(b)
	})
	if err != nil {
		return err
	}
	for _, t := range starts { // in time order, as fine's came
		if err := fn(t, sketches[t].Append(nil)); err != nil {
			return err
		}
	}
	if cut.Before(q.To) {
		rest := q
		rest.From = cut
		return st.Users(ctx, rest, fn)
	}
	return nil
}

// fineOnly is only for a read of fine summed into res: each span widened
// to whole slots of res (a six-hour slot named is its six hours).
func fineOnly(res storage.Res, only storage.Spans, from, to time.Time) storage.Spans {
	if only == nil {
		return nil
	}
	ws := only.Within(res, from, to)
	for i := range ws {
		ws[i].To = res.Slot(ws[i].To.Add(res.Duration() - 1))
	}
	return ws
}
