package reporter

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/shared/report"
)

// TestCachedAtSplice: the cache's bytes are those of the stamped answer,
// for both reports, so a hit decodes to the answer with cachedAt set and
// nothing else changed.
func TestCachedAtSplice(t *testing.T) {
	at := time.Date(2026, 11, 26, 18, 30, 1, 123456789, time.FixedZone("x", 3600))
	n := int64(3)
	done := time.Date(2026, 11, 26, 17, 0, 0, 0, time.UTC)
	sub := &report.SubSystemReport{SubSystemID: "s", TotalEvents: 3, EventsByType: map[string]int64{"a<b": 3}, UniqueUsers: &n,
		TimeSeries: []report.Point{{Timestamp: done, Count: 3}}, Freshness: report.Freshness{DataCompleteUntil: &done}}
	partner := &report.PartnerReport{PartnerID: "p", EventsByType: map[string]int64{}}
	for _, c := range []struct {
		v any
		f *report.Freshness
	}{{sub, &sub.Freshness}, {partner, &partner.Freshness}} {
		v := c.v
		fresh, err := encodeAnswer(v)
		if err != nil {
			t.Fatal(err)
		}
		utc := at.UTC()
		c.f.CachedAt = &utc
		want, _ := encodeAnswer(v)
		var back map[string]any
		if err := json.Unmarshal(want, &back); err != nil || back["cachedAt"] == nil {
			t.Fatalf("stamped answer %s: %v", want, err)
		}
		if got := withCachedAt(fresh, at); !bytes.Equal(got, want) {
			t.Errorf("spliced\n%s\nwant\n%s", got, want)
		}
	}
}

// poisoned answers garbage for every key until the key is set; gen is its
// generation of every id.
type poisoned struct {
	set map[string][]byte
	gen int64
}

func (p *poisoned) GetGenerational(_ context.Context, _, key string) (int64, []byte, bool, error) {
	if b, ok := p.set[key]; ok {
		return p.gen, b, true, nil
	}
	return p.gen, []byte(`{"partnerId":"x",`), true, nil
}

func (p *poisoned) SetBytes(_ context.Context, key string, b []byte, _ time.Duration) error {
	p.set[key] = b
	return nil
}

// An entry opens only as it was sealed: a changed byte, a value without
// the sum (an older version's, a foreign one) are not answers.
func TestCacheEntrySeal(t *testing.T) {
	answer := []byte(`{"partnerId":"p","totalEvents":3}`)
	e := sealEntry(-7, answer)
	if gen, got, ok := openEntry(e); !ok || gen != -7 || !bytes.Equal(got, answer) {
		t.Fatalf("sealed entry opens as %d %q, %v", gen, got, ok)
	}
	for i := range e {
		bad := bytes.Clone(e)
		bad[i] ^= 0x20
		if _, _, ok := openEntry(bad); ok {
			t.Fatalf("byte %d changed: still opens", i)
		}
	}
	old := append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(answer, castagnoli)), answer...) // before generations
	for _, bad := range [][]byte{nil, {}, answer, old, e[:len(e)-1], sealEntry(1, nil), sealEntry(1, []byte("[1]"))} {
		if _, _, ok := openEntry(bad); ok {
			t.Errorf("%q opens", bad)
		}
	}
}

// An entry that is not an answer is never sent: the report is computed
// again and the entry overwritten.
func TestDamagedCacheEntryIsAMiss(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	cache := &poisoned{set: map[string][]byte{}}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	b, err := s.PartnerReportJSON(ctx, q)
	var rep report.PartnerReport
	if err != nil || json.Unmarshal(b, &rep) != nil || rep.PartnerID != p.ID || rep.CachedAt != nil {
		t.Fatalf("over a damaged entry: %s, %v; want the report computed", b, err)
	}
	if len(cache.set) != 1 {
		t.Fatalf("the damaged entry was not overwritten: %d set", len(cache.set))
	}
	if b, err := s.PartnerReportJSON(ctx, q); err != nil || json.Unmarshal(b, &rep) != nil || rep.CachedAt == nil {
		t.Fatalf("the next answer: %s, %v; want it from the cache", b, err)
	}
}

// An entry computed at another generation is a miss: a late event bumped
// it, so the answer is computed again and stored at the new generation.
func TestStaleGenerationIsAMiss(t *testing.T) {
	ctx := context.Background()
	store, p := storeWithPartner(t)
	cache := &poisoned{set: map[string][]byte{}}
	s := New(store, zerolog.Nop()).WithCache(cache, time.Minute)
	q := report.PartnerQuery{PartnerID: p.ID, From: time.Now().Add(-time.Hour), To: time.Now()}
	answer := func() *report.PartnerReport {
		t.Helper()
		b, err := s.PartnerReportJSON(ctx, q)
		var rep report.PartnerReport
		if err != nil || json.Unmarshal(b, &rep) != nil {
			t.Fatalf("answer %s: %v", b, err)
		}
		return &rep
	}
	if answer().CachedAt != nil || answer().CachedAt == nil {
		t.Fatal("not cached at generation 0")
	}
	cache.gen = 1
	if r := answer(); r.CachedAt != nil {
		t.Fatal("an answer of generation 0 was sent at generation 1")
	}
	if r := answer(); r.CachedAt == nil {
		t.Fatal("not cached again at generation 1")
	}
}
