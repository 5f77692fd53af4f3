package cassandrastore

import (
	"context"
	"embed"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
)

//go:embed migrations/*.cql
var migrations embed.FS

var keyspaceRE = regexp.MustCompile(`^[a-z][a-z0-9_]{0,47}$`)

// Migrate creates the keyspace if needed and applies, in order, every
// embedded migration not applied yet. It is idempotent: run it before a new
// version starts, as an explicit step (the -migrate flag or `make migrate`).
// replication is the keyspace's replication map, e.g.
// {'class': 'SimpleStrategy', 'replication_factor': 1}.
func Migrate(ctx context.Context, hosts []string, keyspace, replication string) error {
	if !keyspaceRE.MatchString(keyspace) {
		return fmt.Errorf("cassandrastore: keyspace %q: use lower-case letters, digits and _", keyspace)
	}
	cluster := gocql.NewCluster(hosts...)
	cluster.Consistency = gocql.Quorum
	cluster.Timeout = 30 * time.Second
	s, err := cluster.CreateSession()
	if err != nil {
		return fmt.Errorf("cassandrastore: connect %v: %w", hosts, err)
	}
	defer s.Close()
	stmts := []string{
		fmt.Sprintf("CREATE KEYSPACE IF NOT EXISTS %s WITH replication = %s", keyspace, replication),
		fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.schema_migrations (version int PRIMARY KEY, name text, applied_at timestamp)", keyspace),
	}
	for _, st := range stmts {
		if err := s.Query(st).ExecContext(ctx); err != nil {
			return fmt.Errorf("cassandrastore: %s: %w", st, err)
		}
	}
	applied := map[int]bool{}
	iter := s.Query(fmt.Sprintf("SELECT version FROM %s.schema_migrations", keyspace)).IterContext(ctx)
	var v int
	for iter.Scan(&v) {
		applied[v] = true
	}
	if err := iter.Close(); err != nil {
		return fmt.Errorf("cassandrastore: read schema_migrations: %w", err)
	}
	entries, err := migrations.ReadDir("migrations")
	if err != nil {
		return err
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	for _, e := range entries {
		version, err := strconv.Atoi(strings.SplitN(e.Name(), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("cassandrastore: migration %s: name must start with a number", e.Name())
		}
		if applied[version] {
			continue
		}
		body, _ := migrations.ReadFile("migrations/" + e.Name())
		for _, st := range splitStatements(string(body)) {
			if err := s.Query(useKeyspace(st, keyspace)).ExecContext(ctx); err != nil {
				return fmt.Errorf("cassandrastore: migration %s: %w\n%s", e.Name(), err, st)
			}
		}
		if err := s.Query(fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", keyspace),
			version, e.Name(), time.Now()).ExecContext(ctx); err != nil {
			return err
		}
	}
	// Migrations in Go, after the tables they need, in order.
	for _, step := range goSteps(time.Now()) {
		if applied[step.version] {
			continue
		}
		if err := step.run(ctx, s, keyspace); err != nil {
			return err
		}
		if err := s.Query(fmt.Sprintf("INSERT INTO %s.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", keyspace),
			step.version, step.name, time.Now()).ExecContext(ctx); err != nil {
			return err
		}
	}
	return nil
}

type goStep struct {
	version int
	name    string
	run     func(context.Context, *gocql.Session, string) error
}

// goSteps are the migrations in Go, in order; now is when the layout
// changes they mark take effect.
func goSteps(now time.Time) []goStep {
	return []goStep{
		{copyCountsVersion, "copy counts into rollups (go)", copyCounts},
		{copyTotalsVersion, "copy rollups into totals (go)", copyTotals},
		{layoutVersion, "half hours and six hours from now on (go)", markResolutionsAt(now)},
		{monthlyHalfHoursVersion, "half hours in monthly partitions from now on (go)", markResolutionsAt(now)},
		{packsVersion, "hours packed a day to a row from now on (go)", markLayoutAt(now, packsName)},
		{halfPastVersion, "hours from half past from now on (go)", markLayoutAt(now, halfPastName)},
		{weeksVersion, "weeks from now on (go)", markLayoutAt(now, weeksName)},
		{typedVersion, "the users of each event type from now on (go)", markLayoutAt(now, typedName)},
		{typedSpansVersion, "the users of each event type in shorter partitions from now on (go)", markLayoutAt(now, typedSpansName)},
		{sealVersion, "day packs sealed by readers from now on (go)", markLayoutAt(now, sealName)},
	}
}

// splitStatements splits a file on ';', dropping comment lines.
func splitStatements(body string) []string {
	var lines []string
	for _, l := range strings.Split(body, "\n") {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "--") {
			lines = append(lines, l)
		}
	}
	var out []string
	for _, st := range strings.Split(strings.Join(lines, "\n"), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

var tableRE = regexp.MustCompile(`(?i)(CREATE TABLE IF NOT EXISTS|ALTER TABLE|CREATE TABLE) ([a-z_]+)`)

// useKeyspace qualifies table names with the keyspace.
func useKeyspace(st, keyspace string) string {
	return tableRE.ReplaceAllString(st, "$1 "+keyspace+".$2")
}

// DropKeyspace removes a keyspace (tests use it to clean up).
func DropKeyspace(ctx context.Context, hosts []string, keyspace string) error {
	if !keyspaceRE.MatchString(keyspace) {
		return fmt.Errorf("cassandrastore: keyspace %q", keyspace)
	}
	cluster := gocql.NewCluster(hosts...)
	cluster.Timeout = 30 * time.Second
	s, err := cluster.CreateSession()
	if err != nil {
		return err
	}
	defer s.Close()
	return s.Query("DROP KEYSPACE IF EXISTS " + keyspace).ExecContext(ctx)
}
