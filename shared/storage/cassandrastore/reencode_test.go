package cassandrastore

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/volcanion/tracking/shared/event"
	"github.com/volcanion/tracking/shared/hll"
	"github.com/volcanion/tracking/shared/storage"
	"github.com/volcanion/tracking/shared/tenant"
)

// byteRegisters is the pre-nibble form of a nibble-encoded sketch: a tag
// 2, then its registers a byte each (decoded here by hand, as a reader of
// the format would).
func byteRegisters(t *testing.T, b []byte) []byte {
	t.Helper()
	const m = 1 << 14
	if b[0] != 3 {
		t.Fatalf("a sketch of thousands of users is stored with tag %d, not as nibbles", b[0])
	}
	regs := make([]byte, m)
	base, packed := b[1], b[2:2+m/2]
	for i, x := range packed {
		regs[i], regs[m/2+i] = base+x&15, base+x>>4
	}
	exc := b[2+m/2+2:]
	if len(exc) != 3*int(binary.BigEndian.Uint16(b[2+m/2:])) {
		t.Fatal("exception count")
	}
	for ; len(exc) >= 3; exc = exc[3:] {
		regs[int(exc[0])<<8|int(exc[1])] = exc[2]
	}
	return append([]byte{2}, regs...)
}

// Rows an older release stored a byte a register are rewritten as nibbles,
// with the same registers and TTL, once; a row a fold changed after it was
// read is left as the fold wrote it.
func TestReencodeUsers(t *testing.T) {
	st := openStore(t)
	st.folder.close()
	ctx := context.Background()
	p, sub := tenant.NewID(), tenant.NewID()
	at := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	batch := func(from, n int) []event.Event {
		evs := make([]event.Event, n)
		for i := range evs {
			evs[i] = event.Event{ID: fmt.Sprint("r-", from+i), PartnerID: p, SubSystemID: sub, EventType: "view",
				UserID: fmt.Sprint("u", from+i), Timestamp: at.Add(time.Duration(from+i) * 500 * time.Millisecond)}
		}
		return evs
	}
	write := func(evs []event.Event) {
		t.Helper()
		for len(evs) > 0 {
			k := min(len(evs), 1000)
			if _, err := st.WriteEvents(ctx, evs[:k]); err != nil {
				t.Fatal(err)
			}
			evs = evs[k:]
		}
		if err := st.FoldPartner(ctx, p, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	write(batch(0, 5000))
	pt := part{kindUsers, int8(storage.PartnerUsers), p, storage.Hour, periodOf(storage.Hour, false, at)}
	type row struct {
		sketch, through []byte
		ttl             *int
	}
	read := func() row {
		t.Helper()
		var r row
		err := st.s.Query("SELECT sketch, through, TTL(through) FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
			pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Scan(&r.sketch, &r.through, &r.ttl)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	stored := read()
	if stored.ttl == nil {
		t.Fatal("the partner's hour row has no TTL")
	}
	old := byteRegisters(t, stored.sketch)
	setOld := func() {
		t.Helper()
		r := read()
		err := st.s.Query("UPDATE totals USING TTL ? SET sketch = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
			*r.ttl, byteRegisters(t, r.sketch), pt.kind, pt.a, pt.key, int8(pt.res), pt.period, at).Exec()
		if err != nil {
			t.Fatal(err)
		}
	}
	setOld()
	// A row that holds no sketch, next to it: left as it is.
	next := at.Add(time.Hour)
	if err := st.s.Query("UPDATE totals SET sketch = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		[]byte{9, 9, 9}, stored.through, pt.kind, pt.a, pt.key, int8(pt.res), periodOf(storage.Hour, false, next), next).Exec(); err != nil {
		t.Fatal(err)
	}
	users := func() uint64 {
		t.Helper()
		var all hll.Sketch
		err := st.Users(ctx, storage.UsersQuery{Scope: storage.PartnerUsers, Key: p, Res: storage.Hour, From: at, To: at.Add(time.Hour)}, func(_ time.Time, b []byte) error {
			return all.MergeBinary(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		return all.Estimate()
	}
	before := users()

	n, err := st.ReencodeUsers(ctx, storage.PartnerUsers, p, storage.Hour, at.Add(-time.Hour), at.Add(3*time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("re-encoded %d rows (%v), want the one stored a byte a register", n, err)
	}
	var junk []byte
	if err := st.s.Query("SELECT sketch FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		pt.kind, pt.a, pt.key, int8(pt.res), periodOf(storage.Hour, false, next), next).Scan(&junk); err != nil || !bytes.Equal(junk, []byte{9, 9, 9}) {
		t.Fatalf("the row holding no sketch is now % x (%v)", junk, err)
	}
	if err := st.s.Query("DELETE FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		pt.kind, pt.a, pt.key, int8(pt.res), periodOf(storage.Hour, false, next), next).Exec(); err != nil {
		t.Fatal(err)
	}

	// A row without a TTL keeps none.
	sp := part{kindUsers, int8(storage.SubSystemUsers), sub, storage.Hour, periodOf(storage.Hour, false, at)}
	var subSketch, subThrough []byte
	if err := st.s.Query("SELECT sketch, through FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		sp.kind, sp.a, sp.key, int8(sp.res), sp.period, at).Scan(&subSketch, &subThrough); err != nil {
		t.Fatal(err)
	}
	if err := st.s.Query("UPDATE totals USING TTL 0 SET sketch = ?, through = ? WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		byteRegisters(t, subSketch), subThrough, sp.kind, sp.a, sp.key, int8(sp.res), sp.period, at).Exec(); err != nil {
		t.Fatal(err)
	}
	if n, err := st.ReencodeUsers(ctx, storage.SubSystemUsers, sub, storage.Hour, at, at.Add(time.Hour)); err != nil || n != 1 {
		t.Fatalf("re-encoded %d rows of the sub-system (%v)", n, err)
	}
	var subNow []byte
	var subTTL *int
	if err := st.s.Query("SELECT sketch, TTL(through) FROM totals WHERE kind = ? AND a = ? AND key = ? AND res = ? AND period = ? AND slot = ?",
		sp.kind, sp.a, sp.key, int8(sp.res), sp.period, at).Scan(&subNow, &subTTL); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(subNow, subSketch) || subTTL != nil {
		t.Fatalf("a row without TTL: %d bytes, TTL %v after re-encoding", len(subNow), subTTL)
	}
	got := read()
	if !bytes.Equal(got.sketch, stored.sketch) || !bytes.Equal(byteRegisters(t, got.sketch), old) {
		t.Fatal("the rewritten sketch is not the nibble form of the same registers")
	}
	if !bytes.Equal(got.through, stored.through) {
		t.Fatal("re-encoding changed through")
	}
	if got.ttl == nil || *got.ttl > *stored.ttl || *got.ttl < *stored.ttl-60 {
		t.Fatalf("TTL %v after re-encoding, %d before", got.ttl, *stored.ttl)
	}
	if after := users(); after != before || before < 4800 {
		t.Fatalf("users %d after re-encoding, %d before (5,000 stored)", after, before)
	}
	if n, err := st.ReencodeUsers(ctx, storage.PartnerUsers, p, storage.Hour, at, at.Add(time.Hour)); err != nil || n != 0 {
		t.Fatalf("a second pass re-encoded %d rows (%v)", n, err)
	}

	// A fold between the read and the rewrite wins: the rewrite, made from
	// the row as first read, is not applied and loses no user.
	setOld()
	stale := read()
	write(batch(5000, 1000))
	if ok, err := st.reencodeRow(ctx, pt, at, stale.sketch, stale.through, stale.ttl, false); err != nil || ok {
		t.Fatalf("a rewrite of a row a fold changed since: applied %v (%v)", ok, err)
	}
	if u := users(); u < before+950 {
		t.Fatalf("users %d after a fold of 1,000 more and a stale rewrite, %d before", u, before)
	}
	if read().sketch[0] != 3 {
		t.Fatal("the fold did not write nibbles")
	}
}
