package reporter_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/reporter"
	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
	"github.com/volcanion/tracking/shared/testenv"
)

// readAfterSeen is a real store that notes the storage.ReadAfter of each
// read of counts, users and events (embedding the interface leaves out
// Pebble's ReadView, so the reports read through it).
type readAfterSeen struct {
	storage.Store
	mu   sync.Mutex
	seen []time.Time
}

func (s *readAfterSeen) note(ctx context.Context) {
	s.mu.Lock()
	s.seen = append(s.seen, storage.ReadAfter(ctx))
	s.mu.Unlock()
}

func (s *readAfterSeen) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	s.note(ctx)
	return s.Store.Counts(ctx, q)
}

func (s *readAfterSeen) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	s.note(ctx)
	return s.Store.Users(ctx, q, fn)
}

func (s *readAfterSeen) ListEvents(ctx context.Context, q storage.EventsQuery) ([]event.Event, error) {
	s.note(ctx)
	return s.Store.ListEvents(ctx, q)
}

// Every read behind an answer that says dataCompleteUntil asks the store
// for the writes before the bus was read (a Cassandra reader's reads of a
// moment ago would otherwise serve it, and miss an event stored between
// them and the bus's reading, which dataCompleteUntil then covers).
func TestReadsAskForTheWritesBeforeProgress(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NATS(t)
	_, js := testenv.Conn(t, ns)
	testenv.Provision(t, js)
	st := &readAfterSeen{Store: testenv.Pebble(t)}
	p := tenant.Partner{ID: tenant.NewID(), Code: "p", Name: "P", Status: tenant.Active}
	ss := tenant.SubSystem{ID: tenant.NewID(), PartnerID: p.ID, Code: "s", Name: "S", Status: tenant.Active}
	if err := st.CreatePartner(ctx, p); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateSubSystem(ctx, ss); err != nil {
		t.Fatal(err)
	}
	r := reporter.New(st, zerolog.Nop()).WithProgress(js, time.Second)
	from, to := time.Now().UTC().Add(-24*time.Hour).Truncate(time.Hour), time.Now().UTC().Truncate(time.Hour)
	for name, call := range map[string]func() (*time.Time, error){
		"sub-system": func() (*time.Time, error) {
			a, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		},
		"partner": func() (*time.Time, error) {
			a, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		},
		"events": func() (*time.Time, error) {
			a, err := r.EventsPage(ctx, report.EventsQuery{PartnerID: p.ID, From: from, To: to, Limit: 10})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		},
	} {
		st.mu.Lock()
		st.seen = nil
		st.mu.Unlock()
		before := time.Now()
		complete, err := call()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		after := time.Now()
		if complete == nil {
			t.Fatalf("%s: no dataCompleteUntil", name)
		}
		st.mu.Lock()
		seen := st.seen
		st.mu.Unlock()
		if len(seen) == 0 {
			t.Fatalf("%s: no read", name)
		}
		for _, at := range seen {
			// The bus's reading serves a second (progressEvery): the reads ask
			// for the writes before it, however old, never for none.
			if at.IsZero() || at.After(after) || at.Before(before.Add(-2*time.Second)) {
				t.Fatalf("%s: a read asked for the writes before %v (the answer came between %v and %v)", name, at, before, after)
			}
		}
	}
}
