// Package reporter answers report queries over NATS micro. Counts come from
// the hourly rollups storage keeps exact, so a report is exact at any range;
// series are zero-filled and in UTC.
package reporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/admintoken"
	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/instant"
	"github.com/volcanion/tracking/shared/natsx"
	"github.com/volcanion/tracking/shared/rcache"
	"github.com/volcanion/tracking/shared/report"
	"github.com/volcanion/tracking/shared/reportapi"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/subject"
	"github.com/volcanion/tracking/shared/tenant"
)

// Version is reported by the micro service.
const Version = "0.1.0"

// Service is the reporter.
type Service struct {
	store    storage.Store
	log      zerolog.Logger
	cache    *rcache.Cache
	cacheTTL time.Duration
	admin    *admintoken.Set
	nc       *nats.Conn // asks the registry about forwarded keys
	keys     keyCache
	now      func() time.Time
}

// WithCache caches answers in Redis: for ttl when the range reaches into the
// last hour (it still changes), for 5 minutes when it is older (only late
// events change it). Failed answers are never cached.
func (s *Service) WithCache(c *rcache.Cache, ttl time.Duration) *Service {
	s.cache, s.cacheTTL = c, ttl
	return s
}

func (s *Service) ttl(to time.Time) time.Duration {
	if to.After(time.Now().Add(-time.Hour)) {
		return s.cacheTTL
	}
	return 5 * time.Minute
}

// cached answers from the cache, or computes and stores the answer.
func cached[T any](ctx context.Context, s *Service, key string, to time.Time, compute func() (*T, error)) (*T, error) {
	if s.cache != nil {
		var v T
		if ok, err := s.cache.Get(ctx, key, &v); ok {
			return &v, nil
		} else if err != nil {
			s.log.Debug().Err(err).Msg("report cache unavailable")
		}
	}
	v, err := compute()
	if err == nil && s.cache != nil {
		_ = s.cache.Set(ctx, key, v, s.ttl(to))
	}
	return v, err
}

// New makes a reporter over a store.
func New(store storage.Store, log zerolog.Logger) *Service {
	return &Service{store: store, log: log.With().Str("svc", "reporter").Logger(), now: time.Now}
}

// Start registers the micro service on nc, which also asks the registry
// about the partner keys edges forward.
func (s *Service) Start(nc *nats.Conn) (micro.Service, error) {
	if s.admin == nil {
		return nil, errors.New("reporter: no admin tokens: every partner's reports would be open to any NATS client")
	}
	s.nc = nc
	svc, err := micro.AddService(nc, micro.Config{Name: subject.ReporterService, Version: Version,
		Description: "sub-system and partner reports"})
	if err != nil {
		return nil, fmt.Errorf("reporter: add service: %w", err)
	}
	g := svc.AddGroup(subject.ReporterPrefix)
	add := func(op string, fn natsx.HandlerFunc) error {
		h := natsx.Handler(s.log, "reporter", op, 30*time.Second, fn)
		if op != reportapi.Health {
			h = natsx.SealReplies(natsx.CallerReplyKey, h) // tenant data
		}
		return g.AddEndpoint(op, h, micro.WithEndpointSubject(op))
	}
	err = errors.Join(
		add(reportapi.SubSystem, s.guarded(reportapi.SubSystem, func(ctx context.Context, confined string, data []byte) (any, error) {
			var q report.SubSystemQuery
			if err := json.Unmarshal(data, &q); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad report query: %v", err)
			}
			if confined != "" {
				q.PartnerID = confined // a key reads its own partner's sub-systems, whatever the query says
			}
			return s.SubSystemReport(ctx, q)
		})),
		add(reportapi.Partner, s.guarded(reportapi.Partner, func(ctx context.Context, confined string, data []byte) (any, error) {
			var q report.PartnerQuery
			if err := json.Unmarshal(data, &q); err != nil {
				return nil, apierr.New(apierr.InvalidJSON, "bad report query: %v", err)
			}
			if confined != "" && q.PartnerID != confined {
				// As for an unknown partner: a key learns nothing of others.
				return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
			}
			return s.PartnerReport(ctx, q)
		})),
		add(reportapi.Health, func(ctx context.Context, _ []byte) (any, error) {
			if err := s.store.Ping(ctx); err != nil {
				return nil, apierr.New(apierr.Unavailable, "storage is not answering")
			}
			return map[string]string{"storage": "ok"}, nil
		}),
	)
	if err != nil {
		svc.Stop()
		return nil, fmt.Errorf("reporter: add endpoint: %w", err)
	}
	return svc, nil
}

func ceilTo(t time.Time, d time.Duration) time.Time {
	if tr := t.Truncate(d); !tr.Equal(t) {
		return tr.Add(d)
	}
	return t
}

func dayOf(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func checkRange(from, to time.Time, max time.Duration) error {
	switch {
	case from.IsZero() || to.IsZero():
		return apierr.New(apierr.InvalidParameter, "from and to are required")
	// The edge bounds both; a query that reaches this service some other
	// way must not compute a time that cannot be encoded in the answer (a
	// range in year 9999 widened past it hung the answer until timeout).
	case from.Before(instant.Min) || to.After(instant.Max):
		return apierr.New(apierr.InvalidParameter, "from and to must be %s", instant.Range)
	case !from.Before(to):
		return apierr.New(apierr.InvalidParameter, "from must be before to")
	case to.Sub(from) > max:
		return apierr.New(apierr.RangeTooLarge, "the range is longer than %d days; ask for a shorter one", int(max.Hours()/24))
	}
	return nil
}

// SubSystemReport counts one sub-system's events by type and hour. The range
// is widened to whole hours: [floor(from), ceil(to)).
func (s *Service) SubSystemReport(ctx context.Context, q report.SubSystemQuery) (*report.SubSystemReport, error) {
	if !tenant.ValidID(q.SubSystemID) {
		return nil, apierr.New(apierr.InvalidParameter, "subSystemId must be a UUID")
	}
	from, to := q.From.UTC().Truncate(time.Hour), ceilTo(q.To.UTC(), time.Hour)
	if err := checkRange(from, to, reportapi.MaxSubSystemRangeHours*time.Hour); err != nil {
		return nil, err
	}
	if q.PartnerID != "" {
		// Checked on every request, before the cache: a partner key sees its own sub-systems only.
		ss, err := s.store.GetSubSystem(ctx, q.SubSystemID)
		if errors.Is(err, storage.ErrNotFound) || (err == nil && ss.PartnerID != q.PartnerID) {
			return nil, apierr.New(apierr.SubSystemNotFound, "sub-system not found")
		} else if err != nil {
			return nil, err
		}
	}
	key := fmt.Sprintf("report:sub:%s:%d:%d:%s", q.SubSystemID, from.Unix(), to.Unix(), q.EventType)
	return cached(ctx, s, key, to, func() (*report.SubSystemReport, error) { return s.subSystemReport(ctx, q, from, to) })
}

func (s *Service) subSystemReport(ctx context.Context, q report.SubSystemQuery, from, to time.Time) (*report.SubSystemReport, error) {
	ss, err := s.store.GetSubSystem(ctx, q.SubSystemID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.New(apierr.SubSystemNotFound, "sub-system not found")
	} else if err != nil {
		return nil, err
	}
	counts, err := s.store.SubSystemCounts(ctx, ss.ID, from, to)
	if err != nil {
		return nil, err
	}
	r := &report.SubSystemReport{SubSystemID: ss.ID, SubSystemCode: ss.Code, SubSystemName: ss.Name, PartnerID: ss.PartnerID,
		From: from, To: to, EventType: q.EventType, EventsByType: map[string]int64{}, Granularity: "hour"}
	hours := make([]report.Point, int(to.Sub(from)/time.Hour))
	for i := range hours {
		hours[i].Timestamp = from.Add(time.Duration(i) * time.Hour)
	}
	for _, c := range counts {
		if q.EventType != "" && c.EventType != q.EventType {
			continue
		}
		i := int(c.Start.Sub(from) / time.Hour)
		if i < 0 || i >= len(hours) {
			continue
		}
		hours[i].Count += c.Count
		r.EventsByType[c.EventType] += c.Count
		r.TotalEvents += c.Count
	}
	r.TimeSeries = hours
	return r, nil
}

// PartnerReport counts one partner's events by sub-system and day. The range
// is widened to whole hours; the series has one point per UTC day it touches.
func (s *Service) PartnerReport(ctx context.Context, q report.PartnerQuery) (*report.PartnerReport, error) {
	if !tenant.ValidID(q.PartnerID) {
		return nil, apierr.New(apierr.InvalidParameter, "partnerId must be a UUID")
	}
	from, to := q.From.UTC().Truncate(time.Hour), ceilTo(q.To.UTC(), time.Hour)
	if err := checkRange(from, to, reportapi.MaxPartnerRangeDays*24*time.Hour); err != nil {
		return nil, err
	}
	key := fmt.Sprintf("report:partner:%s:%d:%d", q.PartnerID, from.Unix(), to.Unix())
	return cached(ctx, s, key, to, func() (*report.PartnerReport, error) { return s.partnerReport(ctx, q, from, to) })
}

func (s *Service) partnerReport(ctx context.Context, q report.PartnerQuery, from, to time.Time) (*report.PartnerReport, error) {
	p, err := s.store.GetPartner(ctx, q.PartnerID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, apierr.New(apierr.PartnerNotFound, "partner not found")
	} else if err != nil {
		return nil, err
	}
	counts, err := s.store.PartnerCounts(ctx, p.ID, from, to)
	if err != nil {
		return nil, err
	}
	first, last := dayOf(from), dayOf(to.Add(-time.Nanosecond))
	days := make([]report.Point, int(last.Sub(first)/(24*time.Hour))+1)
	for i := range days {
		days[i].Timestamp = first.AddDate(0, 0, i)
	}
	r := &report.PartnerReport{PartnerID: p.ID, PartnerName: p.Name, From: from, To: to, Granularity: "day"}
	bySub := map[string]int64{}
	for _, c := range counts {
		i := int(dayOf(c.Start).Sub(first) / (24 * time.Hour))
		if i < 0 || i >= len(days) {
			continue
		}
		days[i].Count += c.Count
		bySub[c.SubSystemID] += c.Count
		r.TotalEvents += c.Count
	}
	r.TimeSeries = days
	top := make([]report.SubSystemCount, 0, len(bySub))
	for id, n := range bySub {
		top = append(top, report.SubSystemCount{SubSystemID: id, EventCount: n})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].EventCount != top[j].EventCount {
			return top[i].EventCount > top[j].EventCount
		}
		return top[i].SubSystemID < top[j].SubSystemID
	})
	if len(top) > 10 {
		top = top[:10]
	}
	for i := range top {
		// Deleted sub-systems keep their names here: their events still count.
		if ss, err := s.store.GetSubSystem(ctx, top[i].SubSystemID); err == nil {
			top[i].SubSystemCode, top[i].SubSystemName = ss.Code, ss.Name
		}
	}
	r.TopSubSystems = top
	return r, nil
}
