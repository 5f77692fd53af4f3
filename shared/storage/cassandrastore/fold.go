package cassandrastore

import (
	"context"
	"sync"
	"time"

	gocql "github.com/apache/cassandra-gocql-driver/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

var mFolds = promauto.NewCounterVec(prometheus.CounterOpts{Name: "trk_storage_count_folds_total",
	Help: "Folds of batch count rows into cell totals, by result (folded, contended, error)."}, []string{"result"})

// folder folds the count partitions this process writes, at most once per
// foldEvery each, in the background: a fold is an optimisation of reads and
// of partition size, never needed for exactness (I4).
type folder struct {
	st     *Store
	mu     sync.Mutex
	last   map[foldKey]time.Time
	queue  chan foldKey
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

type foldKey struct {
	kind, key string
	day       int
}

func newFolder(st *Store) *folder {
	f := &folder{st: st, last: map[foldKey]time.Time{}, queue: make(chan foldKey, 1024), done: make(chan struct{})}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	go f.run()
	return f
}

// touch asks for a fold of a counts partition this process just wrote.
func (f *folder) touch(kind, key string, day int) {
	k := foldKey{kind, key, day}
	now := time.Now()
	f.mu.Lock()
	if t, ok := f.last[k]; ok && now.Sub(t) < foldEvery {
		f.mu.Unlock()
		return
	}
	f.last[k] = now
	if len(f.last) > 100_000 {
		for k, t := range f.last {
			if now.Sub(t) > foldEvery {
				delete(f.last, k)
			}
		}
	}
	f.mu.Unlock()
	select {
	case f.queue <- k:
	default: // busy: a later write asks again
	}
}

func (f *folder) run() {
	defer close(f.done)
	for {
		select {
		case <-f.ctx.Done():
			return
		case k := <-f.queue:
			ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
			err := f.st.fold(ctx, k, time.Now().Add(-foldAfter))
			cancel()
			if err != nil {
				mFolds.WithLabelValues("error").Inc()
			}
		}
	}
}

func (f *folder) close() {
	f.cancel()
	<-f.done
}

type countRow struct {
	batch gocql.UUID
	sum   int64
	ttl   int
}

type cellRows struct {
	total    int64
	hasTotal bool
	ttl      int
	rows     []countRow
}

// fold replaces the complete batch rows of a counts partition written
// before cutoff by their cells' totals (I4).
func (st *Store) fold(ctx context.Context, k foldKey, cutoff time.Time) error {
	table, group, key := "counts_by_sub_system", "event_type", "sub_system_id"
	if k.kind == "p" {
		table, group, key = "counts_by_partner", "sub_system_id", "partner_id"
	}
	iter := st.s.Query("SELECT quarter, "+group+", batch_id, n, groups, complete, WRITETIME(complete), TTL(complete), TTL(n) FROM "+table+
		" WHERE "+key+" = ? AND day = ?", k.key, k.day).Consistency(gocql.Serial).WithContext(ctx).PageSize(5000).Iter()
	type cellID struct {
		q time.Time
		g string
	}
	cells := map[cellID]*cellRows{}
	var (
		q                time.Time
		g                string
		batch            gocql.UUID
		n                *int64
		groups           map[int]int64
		complete         *bool
		written          *int64
		ttlRow, ttlTotal *int
	)
	limit := cutoff.UnixMicro()
	for iter.Scan(&q, &g, &batch, &n, &groups, &complete, &written, &ttlRow, &ttlTotal) {
		c := cells[cellID{q, g}]
		if c == nil {
			c = &cellRows{}
			cells[cellID{q, g}] = c
		}
		switch {
		case batch == totalBatch:
			c.hasTotal = true
			if n != nil {
				c.total = *n
			}
			if ttlTotal != nil {
				c.ttl = max(c.ttl, *ttlTotal)
			}
		case complete != nil && *complete && written != nil && *written < limit:
			r := countRow{batch: batch}
			for _, v := range groups {
				r.sum += v
			}
			if ttlRow != nil {
				r.ttl = *ttlRow
			}
			c.rows = append(c.rows, r)
		}
		n, groups, complete, written, ttlRow, ttlTotal = nil, nil, nil, nil, nil, nil
	}
	if err := iter.Close(); err != nil {
		return err
	}
	for id, c := range cells {
		for len(c.rows) > 0 {
			chunk := c.rows[:min(len(c.rows), claimRows)]
			c.rows = c.rows[len(chunk):]
			total, ttl := c.total, c.ttl
			for _, r := range chunk {
				total += r.sum
				ttl = max(ttl, r.ttl)
			}
			if ttl == 0 {
				continue // everything in it has expired
			}
			b := st.s.Batch(gocql.LoggedBatch).SerialConsistency(gocql.Serial)
			if c.hasTotal {
				b.Query("UPDATE "+table+" USING TTL ? SET n = ? WHERE "+key+" = ? AND day = ? AND quarter = ? AND "+group+" = ? AND batch_id = ? IF n = ?",
					ttl, total, k.key, k.day, id.q, id.g, totalBatch, c.total)
			} else {
				b.Query("INSERT INTO "+table+" ("+key+", day, quarter, "+group+", batch_id, n) VALUES (?, ?, ?, ?, ?, ?) IF NOT EXISTS USING TTL ?",
					k.key, k.day, id.q, id.g, totalBatch, total, ttl)
			}
			for _, r := range chunk {
				b.Query("DELETE FROM "+table+" WHERE "+key+" = ? AND day = ? AND quarter = ? AND "+group+" = ? AND batch_id = ?",
					k.key, k.day, id.q, id.g, r.batch)
			}
			applied, it, err := b.MapExecCASContext(ctx, map[string]any{})
			if it != nil {
				it.Close()
			}
			if err != nil {
				return err
			}
			if !applied {
				mFolds.WithLabelValues("contended").Inc()
				return nil // another process folded this partition meanwhile
			}
			mFolds.WithLabelValues("folded").Inc()
			c.total, c.hasTotal, c.ttl = total, true, ttl
		}
	}
	return nil
}
