package reporter

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

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
	mu        sync.Mutex
	seen      []time.Time
	estimates int // reads of UserEstimates
}

func (s *readAfterSeen) note(ctx context.Context) {
	s.mu.Lock()
	s.seen = append(s.seen, storage.ReadAfter(ctx))
	s.mu.Unlock()
}

func (s *readAfterSeen) take() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	seen := s.seen
	s.seen = nil
	return seen
}

func (s *readAfterSeen) Counts(ctx context.Context, q storage.CountsQuery) ([]storage.Slot, error) {
	s.note(ctx)
	return s.Store.Counts(ctx, q)
}

func (s *readAfterSeen) Users(ctx context.Context, q storage.UsersQuery, fn func(time.Time, []byte) error) error {
	s.note(ctx)
	return s.Store.Users(ctx, q, fn)
}

func (s *readAfterSeen) UserEstimates(ctx context.Context, q storage.UsersQuery, fn func(time.Time, uint64) error) error {
	s.note(ctx)
	s.mu.Lock()
	s.estimates++
	s.mu.Unlock()
	return s.Store.UserEstimates(ctx, q, fn)
}

func (s *readAfterSeen) ListEvents(ctx context.Context, q storage.EventsQuery) ([]event.Event, error) {
	s.note(ctx)
	return s.Store.ListEvents(ctx, q)
}

// Every read behind an answer that says dataCompleteUntil asks the store
// for the writes before the bus was read, no earlier (a Cassandra reader's
// reads of a moment ago would otherwise serve it, and miss an event stored
// between them and the bus's reading, which dataCompleteUntil then
// covers): in each kind of report and page, the bus's reading fresh or
// kept.
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
	r := New(st, zerolog.Nop()).WithProgress(js, time.Second)
	frozen := time.Now()
	r.now = func() time.Time { return frozen } // the bus's first reading serves every answer below
	from, to := frozen.UTC().Add(-24*time.Hour).Truncate(time.Hour), frozen.UTC().Truncate(time.Hour)
	// A UTC day by hour: each point one stored hour, the range one day, so
	// its points' users are the hours' estimates (UserEstimates).
	day := frozen.UTC().Truncate(24 * time.Hour).Add(-24 * time.Hour)
	answers := []struct {
		name string
		call func() (*time.Time, error)
	}{
		{"sub-system, a UTC day by hour", func() (*time.Time, error) {
			a, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: day, To: day.Add(24 * time.Hour)})
			if err != nil {
				return nil, err
			}
			if st.estimates == 0 {
				t.Fatal("a UTC day by hour read no estimates")
			}
			return a.DataCompleteUntil, nil
		}},
		{"sub-system", func() (*time.Time, error) {
			a, err := r.SubSystemReport(ctx, report.SubSystemQuery{SubSystemID: ss.ID, From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
		{"partner", func() (*time.Time, error) {
			a, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
		{"partner, one sub-system", func() (*time.Time, error) {
			a, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, SubSystemID: ss.ID, From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
		{"partner, one event type", func() (*time.Time, error) {
			a, err := r.PartnerReport(ctx, report.PartnerQuery{PartnerID: p.ID, EventType: "view", From: from, To: to})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
		{"events", func() (*time.Time, error) {
			a, err := r.EventsPage(ctx, report.EventsQuery{PartnerID: p.ID, From: from, To: to, Limit: 10})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
		{"events of a type and sub-system", func() (*time.Time, error) {
			a, err := r.EventsPage(ctx, report.EventsQuery{PartnerID: p.ID, SubSystemID: ss.ID, EventType: "view", From: from, To: to, Limit: 10})
			if err != nil {
				return nil, err
			}
			return a.DataCompleteUntil, nil
		}},
	}
	var read time.Time // the instant of the bus's reading, once seen
	for i, a := range answers {
		before := time.Now()
		complete, err := a.call()
		if err != nil {
			t.Fatalf("%s: %v", a.name, err)
		}
		after := time.Now()
		if complete == nil {
			t.Fatalf("%s: no dataCompleteUntil", a.name)
		}
		seen := st.take()
		if len(seen) == 0 {
			t.Fatalf("%s: no read", a.name)
		}
		for _, at := range seen {
			switch {
			case i == 0 && (at.Before(before) || at.After(after)):
				// The first answer read the bus: its reads ask for the
				// writes before that reading, taken during the call.
				t.Fatalf("%s: a read asked for the writes before %v; the bus was read between %v and %v", a.name, at, before, after)
			case i > 0 && !at.Equal(read):
				t.Fatalf("%s: a read asked for the writes before %v; the bus reading it answers from was at %v", a.name, at, read)
			}
			read = at
		}
	}
}
