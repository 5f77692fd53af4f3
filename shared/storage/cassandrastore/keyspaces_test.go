package cassandrastore

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"

	"github.com/volcanion/tracking/shared/tenant"
)

// rowsOf counts the rows of every table of a keyspace, and reads its
// layout's dates.
func rowsOf(t *testing.T, s *gocql.Session, ks string) (map[string]int, map[string]time.Time) {
	t.Helper()
	_, tables, err := schemaShape(context.Background(), s, ks)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, table := range tables {
		var n int
		if err := s.Query("SELECT count(*) FROM " + ks + "." + table).Scan(&n); err != nil {
			t.Fatal(err)
		}
		rows[table] = n
	}
	layout := map[string]time.Time{}
	iter := s.Query("SELECT name, since FROM " + ks + ".layout").Iter()
	var name string
	var since time.Time
	for iter.Scan(&name, &since) {
		layout[name] = since
	}
	if err := iter.Close(); err != nil {
		t.Fatal(err)
	}
	return rows, layout
}

// A keyspace given back holds what a new one holds and nothing a test
// wrote: every table as many rows, the layout's dates from when it was
// given back (a test's own dates gone); one whose schema a test changed
// is dropped, never lent again.
func TestKeyspacePoolLendsThemAsNew(t *testing.T) {
	if pool == nil {
		t.Skip("VT_CASSANDRA_HOSTS is not set; `make test` starts Cassandra and sets it")
	}
	ctx := context.Background()
	p := NewKeyspacePool(pool.hosts, "vt_pool")
	defer p.Close(ctx)
	s, err := p.session()
	if err != nil {
		t.Fatal(err)
	}
	made := time.Now()
	ks, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fresh, freshLayout := rowsOf(t, s, ks)
	if len(freshLayout) == 0 {
		t.Fatal("a new keyspace without its layout's dates")
	}

	// A test's writes: events folded and not, a partner, a lease, and a
	// layout as an upgrade leaves it.
	cfg := DefaultConfig()
	cfg.Hosts, cfg.Keyspace = p.hosts, ks
	st, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	partner, subs := tenant.NewID(), []string{tenant.NewID()}
	if err := st.CreatePartner(ctx, tenant.Partner{ID: partner, Code: "pool", Name: "Pool", Status: tenant.Active}); err != nil {
		t.Fatal(err)
	}
	ts := time.Now().UTC().Add(-time.Hour)
	if _, err := st.WriteEvents(ctx, batchOf(partner, subs, 50, ts)); err != nil {
		t.Fatal(err)
	}
	if err := st.FoldPartner(ctx, partner, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.WriteEvents(ctx, batchOf(partner, subs, 70, ts)[50:]); err != nil {
		t.Fatal(err)
	}
	st.Close()
	upgraded := time.Now().AddDate(1, 0, 0).UTC().Truncate(time.Millisecond)
	if err := SetResolutionsSince(ctx, p.hosts, ks, upgraded); err != nil {
		t.Fatal(err)
	}
	written, _ := rowsOf(t, s, ks)
	if fmt.Sprint(written) == fmt.Sprint(fresh) {
		t.Fatal("the test's writes left no rows")
	}

	back := time.Now()
	if err := p.Put(ctx, ks); err != nil {
		t.Fatal(err)
	}
	again, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if again != ks {
		t.Fatalf("lent %s, not the keyspace given back (%s)", again, ks)
	}
	rows, layout := rowsOf(t, s, ks)
	if fmt.Sprint(rows) != fmt.Sprint(fresh) {
		t.Fatalf("rows given back:\n%v\nnew:\n%v", rows, fresh)
	}
	if fmt.Sprint(keysOf(layout)) != fmt.Sprint(keysOf(freshLayout)) {
		t.Fatalf("layout %v, new %v", layout, freshLayout)
	}
	for name, since := range layout {
		// A date a new keyspace starts with: the same; one from when it
		// was made: from when it was given back.
		if was := freshLayout[name]; was.Before(made.Add(-time.Second)) {
			if !since.Equal(was) {
				t.Fatalf("layout %s since %v, new %v", name, since, was)
			}
		} else if since.Before(back.Add(-time.Second)) || since.After(time.Now().Add(time.Second)) {
			t.Fatalf("layout %s since %v, not from when it was given back (%v)", name, since, back)
		}
	}
	// A store on it counts nothing of the test before.
	st, err = Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if a, b, err := counts(st, partner, subs, ts); err != nil || a != 0 || b != 0 {
		t.Fatalf("counted %d, %d (%v) on a keyspace given back", a, b, err)
	}
	st.Close()

	// Its schema changed (a column, a table's options): dropped.
	for _, change := range []string{"ALTER TABLE %s.partners ADD extra text", "ALTER TABLE %s.totals WITH gc_grace_seconds = 60"} {
		if err := s.Query(fmt.Sprintf(change, ks)).Exec(); err != nil {
			t.Fatal(err)
		}
		if err := p.Put(ctx, ks); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := s.Query("SELECT count(*) FROM system_schema.keyspaces WHERE keyspace_name = ?", ks).Scan(&n); err != nil || n != 0 {
			t.Fatalf("%q: %d keyspaces left (%v)", change, n, err)
		}
		other, err := p.Get(ctx)
		if err != nil || other == ks {
			t.Fatalf("%q: lent %s (%v) after it was dropped", change, other, err)
		}
		ks = other
	}
}

func keysOf(m map[string]time.Time) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
