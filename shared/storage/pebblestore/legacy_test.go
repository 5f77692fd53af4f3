package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// Records written before versions and case-insensitive codes: two partners
// whose codes differ by case only, without a version, indexed under the
// code as written. Each keeps working (found by its exact code, updated).
func TestLegacyRecordsKeepWorking(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	now := time.Now().UTC()
	ids := map[string]string{"acme": tenant.NewID(), "ACME": tenant.NewID()}
	for code, id := range ids {
		legacy := map[string]any{"id": id, "code": code, "name": "legacy", "status": "Active", "createdAt": now, "updatedAt": now}
		if err := s.db.Set(key("p", id), mustJSON(legacy), pebble.Sync); err != nil {
			t.Fatal(err)
		}
		if err := s.db.Set(key("pc", code), []byte(id), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	for code, id := range ids {
		if p, err := s.GetPartnerByCode(ctx, code); err != nil || p.ID != id || p.Version != 0 {
			t.Fatalf("legacy %q: %+v %v", code, p, err)
		}
	}
	p, _ := s.GetPartner(ctx, ids["ACME"])
	p.Name = "renamed"
	if err := s.UpdatePartner(ctx, p); err != nil {
		t.Fatalf("update of a legacy record: %v", err)
	}
	for code, id := range ids {
		if got, err := s.GetPartnerByCode(ctx, code); err != nil || got.ID != id {
			t.Fatalf("after update, %q: %+v %v", code, got, err)
		}
	}
	if got, _ := s.GetPartner(ctx, ids["ACME"]); got.Version != 1 || got.Name != "renamed" {
		t.Fatalf("after update: %+v", got)
	}
}

// A store written before the current count layout (quarter-hour counts
// under qs/qp, hourly ones under rs/rp, no user sketches), or one whose
// rebuild was interrupted, is recounted from its stored events when opened:
// every resolution exact, users sketched, the old keys gone.
func TestRebuildFromOldLayout(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	p, sub := tenant.NewID(), tenant.NewID()
	var evs []event.Event
	for i, m := range []int{1, 2, 2, 40, 70} {
		ts := h.Add(time.Duration(m) * time.Minute)
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			Timestamp: ts, ReceivedAt: ts, UserID: fmt.Sprint("user", i%3)})
	}
	if _, err := s.WriteEvents(ctx, evs); err != nil {
		t.Fatal(err)
	}
	// Make it an old store: no new layout, old keys that would count twice.
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], 5)
	b := s.db.NewBatch()
	for _, pre := range []string{"c/", "u/", "meta/"} {
		must(t, b.DeleteRange([]byte(pre), prefixEnd([]byte(pre)), nil))
	}
	must(t, b.Set(key("rs", sub, hourKey(h), "view"), n[:], nil))
	must(t, b.Set(key("qp", p, quarterKey(h), sub), n[:], nil))
	must(t, b.Commit(pebble.Sync))
	must(t, s.Close())

	check := func(s *Store) {
		t.Helper()
		for _, res := range storage.Resolutions {
			slots, err := s.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: res, From: h.Add(-24 * time.Hour), To: h.Add(24 * time.Hour)})
			must(t, err)
			var total int64
			for _, sl := range slots {
				total += sl.Total
			}
			if total != 5 {
				t.Fatalf("%s: total %d, want 5 (%+v)", res, total, slots)
			}
		}
		cs, err := storage.SubSystemCounts(ctx, s, sub, h, h.Add(time.Hour))
		must(t, err)
		if len(cs) != 2 || cs[0].Count != 3 || cs[1].Count != 1 {
			t.Fatalf("quarters of the hour: %+v", cs)
		}
		us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Day, From: h.Add(-24 * time.Hour), To: h.Add(24 * time.Hour)})
		must(t, err)
		var sk hll.Sketch
		for _, u := range us {
			must(t, sk.MergeBinary(u.Sketch))
		}
		if sk.Estimate() != 3 {
			t.Fatalf("users %d, want 3", sk.Estimate())
		}
		for _, pre := range []string{"rs/", "qp/"} {
			_ = s.scanPrefix([]byte(pre), func(k, _ []byte) (bool, error) {
				t.Fatalf("old key %q left", k)
				return false, nil
			})
		}
	}
	s, err = Open(dir)
	must(t, err)
	check(s)
	// An interrupted rebuild (some new keys, no marker) starts over.
	must(t, s.db.Delete([]byte(rollupsMeta), pebble.Sync))
	must(t, s.Close())
	s, err = Open(dir)
	must(t, err)
	defer s.Close()
	check(s)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A store whose sketches an older release wrote a byte a register is
// re-encoded at Open, once: the same registers (the same users), in the
// nibble form, half the bytes.
func TestReencodeOldSketches(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	must(t, err)
	ctx := context.Background()
	h := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Hour)
	p, sub := tenant.NewID(), tenant.NewID()
	evs := make([]event.Event, 6000)
	for i := range evs {
		ts := h.Add(time.Duration(i) * 500 * time.Millisecond)
		evs[i] = event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: "view",
			Timestamp: ts, ReceivedAt: ts, UserID: fmt.Sprint("user", i)}
	}
	_, err = s.WriteEvents(ctx, evs)
	must(t, err)
	k := slotKey(userPrefix(storage.PartnerUsers, p, storage.Hour), h)
	nib, err := s.get(k)
	must(t, err)
	if !hll.IsDense(nib) || len(nib) > 9000 {
		t.Fatalf("the hour of 6,000 users is stored in %d bytes (tag %d), not as nibbles", len(nib), nib[0])
	}
	var sk hll.Sketch
	must(t, sk.MergeBinary(nib))
	want := sk.Estimate()
	old := append([]byte{2}, registers(t, &sk)...)
	must(t, s.db.Set(k, old, pebble.Sync))
	must(t, s.db.Delete([]byte(sketchesMeta), pebble.Sync))
	must(t, s.Close())

	s, err = Open(dir)
	must(t, err)
	defer s.Close()
	got, err := s.get(k)
	must(t, err)
	if string(got) != string(nib) {
		t.Fatalf("after Open the sketch is %d bytes (tag %d), want the %d-byte nibble form", len(got), got[0], len(nib))
	}
	us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Hour, From: h, To: h.Add(time.Hour)})
	must(t, err)
	if len(us) != 1 {
		t.Fatalf("%d hour slots", len(us))
	}
	var back hll.Sketch
	must(t, back.MergeBinary(us[0].Sketch))
	if back.Estimate() != want || want < 5800 {
		t.Fatalf("users %d after re-encoding, %d before (6,000 stored)", back.Estimate(), want)
	}
	if v, err := s.get([]byte(sketchesMeta)); err != nil || string(v) != sketchesForm {
		t.Fatalf("no marker after the pass: %q %v", v, err)
	}
}

// registers decodes a sketch's nibble form by hand, as a reader of the
// format would.
func registers(t *testing.T, sk *hll.Sketch) []byte {
	t.Helper()
	b := sk.Append(nil)
	if b[0] != 3 {
		t.Fatalf("tag %d", b[0])
	}
	const m = 1 << 14
	regs := make([]byte, m)
	base, packed := b[1], b[2:2+m/2]
	for i, x := range packed {
		regs[i], regs[m/2+i] = base+x&15, base+x>>4
	}
	for exc := b[2+m/2+2:]; len(exc) >= 3; exc = exc[3:] {
		regs[int(exc[0])<<8|int(exc[1])] = exc[2]
	}
	return regs
}
