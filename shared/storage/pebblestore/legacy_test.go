package pebblestore

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
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
// re-encoded at Open, once: the same registers (the same users), each in
// its form now (nibbles for the hour of 6,000 users), in several commits.
// A pass interrupted after a commit leaves no marker and starts over; a
// sketch that does not decode is left as it was.
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
	hour := slotKey(userPrefix(storage.PartnerUsers, p, storage.Hour), h)
	nib, err := s.get(hour)
	must(t, err)
	if !hll.IsDense(nib) || len(nib) > 9000 {
		t.Fatalf("the hour of 6,000 users is stored in %d bytes (tag %d), not as nibbles", len(nib), nib[0])
	}
	// Every sketch back to a byte a register, as an older release wrote them.
	now := map[string][]byte{}
	must(t, s.scanPrefix([]byte("u/"), func(k, v []byte) (bool, error) {
		now[string(k)] = append([]byte(nil), v...)
		return true, nil
	}))
	if len(now) < 50 {
		t.Fatalf("only %d sketches", len(now))
	}
	b := s.db.NewBatch()
	for k, v := range now {
		must(t, b.Set([]byte(k), byteForm(t, v), nil))
	}
	bad := slotKey(userPrefix(storage.PartnerUsers, p, storage.Day), h.Add(-48*time.Hour))
	must(t, b.Set(bad, []byte{9, 9, 9}, nil)) // not a sketch
	must(t, b.Delete([]byte(sketchesMeta), nil))
	must(t, b.Commit(pebble.Sync))
	must(t, s.Close())

	reencodeBatch = 7
	defer func() { reencodeBatch, reencodeHook = 10_000, nil }()
	reencodeHook = func(n int) error {
		if n >= 14 {
			return fmt.Errorf("interrupted after %d", n)
		}
		return nil
	}
	if _, err := Open(dir); err == nil {
		t.Fatal("Open went on past an interrupted pass")
	}
	reencodeHook = nil
	s, err = Open(dir)
	must(t, err)
	defer s.Close()
	for k, want := range now {
		got, err := s.get([]byte(k))
		must(t, err)
		if string(got) != string(want) {
			t.Fatalf("%q after Open: %d bytes (tag %d), want %d (tag %d)", k, len(got), got[0], len(want), want[0])
		}
	}
	if v, _ := s.get(bad); string(v) != string([]byte{9, 9, 9}) {
		t.Fatalf("a value that is no sketch became % x", v)
	}
	if v, err := s.get([]byte(sketchesMeta)); err != nil || string(v) != sketchesForm {
		t.Fatalf("no marker after the pass: %q %v", v, err)
	}
	us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Hour, From: h, To: h.Add(time.Hour)})
	must(t, err)
	var back hll.Sketch
	must(t, back.MergeBinary(us[0].Sketch))
	if e := back.Estimate(); e < 5800 || e > 6200 {
		t.Fatalf("users %d after re-encoding (6,000 stored)", e)
	}
}

// byteForm is a sketch a byte a register (tag 2), from any form.
func byteForm(t *testing.T, v []byte) []byte {
	t.Helper()
	const m = 1 << 14
	regs := make([]byte, m)
	switch v[0] {
	case 1:
		for e := v[1:]; len(e) >= 3; e = e[3:] {
			regs[int(e[0])<<8|int(e[1])] = e[2]
		}
	case 3:
		var sk hll.Sketch
		must(t, sk.MergeBinary(v))
		regs = registers(t, &sk)
	default:
		t.Fatalf("tag %d", v[0])
	}
	return append([]byte{2}, regs...)
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

// A store of layout "2" (the release before half hours and six hours: none
// of their keys), "3" (before hours from half past), "4" (before weeks) or
// "5" (before the users of each type) is recounted at Open: every
// resolution counts every event, users included, and each once (a store
// at "5" keeps its counts, and must not count them again).
func TestUpgradeFromLayout2(t *testing.T) {
	for _, c := range []struct {
		layout string
		drop   []storage.Res
	}{
		{"2", []storage.Res{storage.HalfHour, storage.SixHours, storage.HalfPastHour, storage.Week}},
		{"3", []storage.Res{storage.HalfPastHour, storage.Week}},
		{"4", []storage.Res{storage.Week}},
		{"5", nil},
	} {
		t.Run(c.layout, func(t *testing.T) { testUpgradeFromLayout(t, c.layout, c.drop) })
	}
}

func testUpgradeFromLayout(t *testing.T, layout string, drop []storage.Res) {
	dir := t.TempDir()
	s, err := Open(dir)
	must(t, err)
	ctx := context.Background()
	h := time.Now().UTC().Add(-30 * time.Hour).Truncate(time.Hour)
	p, sub := tenant.NewID(), tenant.NewID()
	var evs []event.Event
	for i := range 20 {
		ts := h.Add(time.Duration(i) * 7 * time.Minute)
		evs = append(evs, event.Event{ID: fmt.Sprint("e", i), PartnerID: p, SubSystemID: sub, EventType: "view", Timestamp: ts, ReceivedAt: ts, UserID: fmt.Sprint("u", i)})
	}
	_, err = s.WriteEvents(ctx, evs)
	must(t, err)
	b := s.db.NewBatch()
	dropped := 0
	typed := []storage.UserScope{storage.PartnerTypeUsers, storage.SubSystemTypeUsers}
	keyOf := map[storage.UserScope]string{storage.PartnerUsers: p,
		storage.PartnerTypeUsers: storage.TypedKey(p, "view"), storage.SubSystemTypeUsers: storage.TypedKey(sub, "view")}
	for _, r := range storage.Resolutions {
		var pres [][]byte
		if slices.Contains(drop, r) {
			pres = append(pres, countPrefix(storage.PartnerTypes, p, r), userPrefix(storage.PartnerUsers, p, r))
		}
		if layout <= "5" { // before the users of each type: none of theirs
			for _, sc := range typed {
				pres = append(pres, userPrefix(sc, keyOf[sc], r))
			}
		}
		for _, pre := range pres {
			must(t, s.scanPrefix(pre, func(k, _ []byte) (bool, error) {
				dropped++
				return true, b.Delete(append([]byte(nil), k...), nil)
			}))
		}
	}
	if dropped == 0 {
		t.Fatalf("no %v keys to drop", drop)
	}
	must(t, b.Set([]byte(rollupsMeta), []byte(layout), nil))
	must(t, b.Commit(pebble.Sync))
	must(t, s.Close())
	s, err = Open(dir)
	must(t, err)
	defer s.Close()
	for _, res := range storage.Resolutions {
		sl, err := s.Counts(ctx, storage.CountsQuery{Rollup: storage.PartnerTypes, Key: p, Res: res, From: h.Add(-24 * time.Hour), To: h.Add(48 * time.Hour)})
		must(t, err)
		var n int64
		for _, x := range sl {
			n += x.Total
		}
		if n != 20 {
			t.Errorf("%v: %d of 20 events", res, n)
		}
		for _, sc := range append([]storage.UserScope{storage.PartnerUsers}, typed...) {
			us, err := storage.UserSlots(ctx, s, storage.UsersQuery{Scope: sc, Key: keyOf[sc], Res: res, From: h.Add(-24 * time.Hour), To: h.Add(48 * time.Hour)})
			must(t, err)
			var sk hll.Sketch
			for _, u := range us {
				must(t, sk.MergeBinary(u.Sketch))
			}
			if sk.Estimate() != 20 {
				t.Errorf("%v scope %d: %d of 20 users", res, sc, sk.Estimate())
			}
		}
	}
}
