package workers

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/natsx"
	api "github.com/volcanion/tracking/shared/registryapi"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// Directory tells whether a partner and its sub-system exist. Internal
// services publish straight to NATS, so their events reach workers unchecked.
type Directory interface {
	// Check returns a reason when the event can never be stored, "" when it
	// can, with the partner's retention (0: the default); an error means the
	// answer is unknown for now (retry later).
	Check(ctx context.Context, partnerID, subSystemID string) (reason string, retention time.Duration, err error)
}

// RegistryDirectory asks the registry, caching answers for ttl. Existence
// is all it checks: an event the edge accepted for a sub-system disabled
// since is still stored.
type RegistryDirectory struct {
	nc  *nats.Conn
	ttl time.Duration

	mu      sync.Mutex
	entries map[string]dirEntry
}

type dirEntry struct {
	subs      map[string]bool // nil: the partner does not exist
	retention time.Duration
	at        time.Time
}

// NewRegistryDirectory makes a directory over the registry service.
func NewRegistryDirectory(nc *nats.Conn, ttl time.Duration) *RegistryDirectory {
	return &RegistryDirectory{nc: nc, ttl: ttl, entries: map[string]dirEntry{}}
}

func (d *RegistryDirectory) Check(ctx context.Context, partnerID, subSystemID string) (string, time.Duration, error) {
	d.mu.Lock()
	e, ok := d.entries[partnerID]
	d.mu.Unlock()
	if !ok || time.Since(e.at) > d.ttl || (e.subs != nil && !e.subs[subSystemID]) {
		// Refresh on a miss, on age, and before calling a sub-system unknown
		// (it may have been created a moment ago).
		var p struct{ RetentionDays int }
		var subs []struct{ ID string }
		err := natsx.Call(ctx, d.nc, subject.Registry(api.PartnersGet), api.Request{PartnerID: partnerID}, &p)
		if err == nil {
			err = natsx.Call(ctx, d.nc, subject.Registry(api.SubSystemsList), api.Request{PartnerID: partnerID, IncludeDeleted: true}, &subs)
		}
		switch {
		case apierr.Is(err, apierr.PartnerNotFound), apierr.Is(err, apierr.InvalidParameter), apierr.Is(err, apierr.ValidationFailed):
			e = dirEntry{at: time.Now()}
		case err != nil:
			return "", 0, err
		default:
			e = dirEntry{subs: make(map[string]bool, len(subs)), retention: time.Duration(p.RetentionDays) * 24 * time.Hour, at: time.Now()}
			for _, s := range subs {
				e.subs[s.ID] = true
			}
		}
		d.mu.Lock()
		d.entries[partnerID] = e
		d.mu.Unlock()
	}
	switch {
	case e.subs == nil:
		return "unknown partner", 0, nil
	case !e.subs[subSystemID]:
		return "unknown sub-system of the partner", 0, nil
	}
	return "", e.retention, nil
}

// RegistryPartner reads a partner's record from the registry (its status,
// for the keys the dead-letter service checks).
func RegistryPartner(nc *nats.Conn) func(ctx context.Context, id string) (tenant.Partner, error) {
	return func(ctx context.Context, id string) (tenant.Partner, error) {
		var p tenant.Partner
		err := natsx.Call(ctx, nc, subject.Registry(api.PartnersGet), api.Request{PartnerID: id}, &p)
		return p, err
	}
}
