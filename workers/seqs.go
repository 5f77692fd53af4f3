package workers

import (
	"context"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"

	"github.com/volcanion/tracking/shared/apierr"
	"github.com/volcanion/tracking/shared/dlqapi"
	"github.com/volcanion/tracking/shared/provision"
)

// A partner's key lists its dead letters, but their sequences are the
// dead-letter stream's, which every partner shares: the gaps between a
// partner's own would tell it how many letters others had. So a partner is
// shown each sequence (and pages on with it) through a keyed permutation,
// and never a letter's place in the events stream (originalSeq, which
// tells the whole system's traffic). The admin sees both as they are, and
// replays and discards by them.
//
// The permutation is a four-round Feistel network over 52 bits (a
// JavaScript number holds them exactly; a stream holds fewer messages),
// keyed from the events stream's de-duplication key, which every worker
// reads and no partner can (provision.DedupKey).

const (
	seqBits = 52
	half    = seqBits / 2
	halfMax = 1<<half - 1
)

// key returns the permutation's key, read once.
func (d *deadLetters) key(ctx context.Context) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seqKey != nil {
		return d.seqKey, nil
	}
	secret, err := provision.DedupKey(ctx, d.js)
	if err != nil {
		return nil, apierr.New(apierr.Unavailable, "the dead letters cannot be listed for now; try again")
	}
	k, err := hkdf.Key(sha256.New, []byte(secret), nil, "trk dead-letter sequences", 32)
	if err != nil {
		return nil, err
	}
	d.seqKey = k
	return k, nil
}

// round is the Feistel function of round i.
func round(key []byte, i int, x uint64) uint64 {
	m := hmac.New(sha256.New, key)
	var b [9]byte
	b[0] = byte(i)
	binary.BigEndian.PutUint64(b[1:], x)
	m.Write(b[:])
	return binary.BigEndian.Uint64(m.Sum(nil)) & halfMax
}

// hideSeq permutes a sequence (below 2^52) for a partner.
func hideSeq(key []byte, seq uint64) uint64 {
	l, r := seq>>half&halfMax, seq&halfMax
	for i := range 4 {
		l, r = r, l^round(key, i, r)
	}
	return l<<half | r
}

// showSeq undoes hideSeq. A value hideSeq never gave maps to some
// sequence: a page of the partner's own letters from there, nothing else.
func showSeq(key []byte, v uint64) uint64 {
	l, r := v>>half&halfMax, v&halfMax
	for i := 3; i >= 0; i-- {
		l, r = r^round(key, i, l), l
	}
	return l<<half | r
}

// listForPartner is list as a partner's key sees it: sequences permuted,
// originalSeq left out.
func (d *deadLetters) listForPartner(ctx context.Context, req dlqapi.Request, filter string) (any, error) {
	key, err := d.key(ctx)
	if err != nil {
		return nil, err
	}
	if req.After != 0 {
		if req.After >= 1<<seqBits {
			return dlqapi.Page{Items: []dlqapi.Letter{}}, nil // no page of ours starts there
		}
		req.After = showSeq(key, req.After)
	}
	v, err := d.list(ctx, req, filter)
	if err != nil {
		return nil, err
	}
	page := v.(dlqapi.Page)
	for i := range page.Items {
		page.Items[i].Seq = hideSeq(key, page.Items[i].Seq)
		page.Items[i].OriginalSeq = 0
	}
	if page.Next != 0 {
		page.Next = hideSeq(key, page.Next)
	}
	return page, nil
}
