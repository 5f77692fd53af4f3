package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// sweepPartners are the partners the sweeps made, for the stored check.
var sweepPartners []string

// dimensions are the sweeps, each one table from one run: how cost grows
// with event size, batch size, connections, partners and keys.
var dimensions = []string{"size", "batch", "conns", "partners", "keys"}

// row is one sweep measurement.
type row struct {
	Value string `json:"value"`
	result
	MBps float64 `json:"mbPerSecond"`
}

// sweep runs the named dimensions against the edge at base, each value for
// d, and prints a table per dimension.
func sweep(names []string, d time.Duration, conns int, base, admin, key string, single []byte) (map[string][]row, error) {
	out := map[string][]row{}
	withMeta := func(size int) []byte {
		// Pad metadata so the whole body is about size bytes.
		pad := max(size-len(single), 1)
		b, _ := json.Marshal(map[string]any{"subSystemCode": "web", "eventType": "page_view", "userId": "u-42",
			"metadata": map[string]string{"pad": strings.Repeat("x", pad)}})
		return b
	}
	bulkOf := func(n int) []byte {
		evs := make([]json.RawMessage, n)
		for i := range evs {
			evs[i] = single
		}
		b, _ := json.Marshal(map[string]any{"events": evs})
		return b
	}
	for _, name := range names {
		var rows []row
		add := func(value string, r result, body []byte, perReq int) {
			mb := r.EventsSec / float64(perReq) * float64(len(body)) / (1 << 20)
			rows = append(rows, row{Value: value, result: r, MBps: mb})
			fmt.Printf("sweep %-8s %-6s %9.0f events/s %7.1f MB/s p50 %-9s p99 %-9s %v\n", name, value, r.EventsSec, mb, r.P50, r.P99, r.Statuses)
		}
		switch name {
		case "size":
			for _, size := range []int{256, 1 << 10, 4 << 10, 16 << 10, 32 << 10} {
				body := withMeta(size)
				add(fmt.Sprintf("%d B", len(body)), closedLoop(conns, d, base+"/tracking", key, body, 1), body, 1)
			}
		case "batch":
			for _, n := range []int{1, 10, 100, 500} {
				body := bulkOf(n)
				add(fmt.Sprint(n), closedLoop(conns, d, base+"/tracking/bulk", key, body, n), body, n)
			}
		case "conns":
			for _, c := range []int{1, 4, 16, 64, 256} {
				add(fmt.Sprint(c), closedLoop(c, d, base+"/tracking", key, single, 1), single, 1)
			}
		case "partners":
			var keys []string
			for _, n := range []int{1, 10, 100, 1000} {
				for len(keys) < n {
					p, k, err := tenant(base, admin)
					if err != nil {
						return nil, err
					}
					sweepPartners = append(sweepPartners, p)
					keys = append(keys, k)
				}
				add(fmt.Sprint(n), closedLoopKeys(conns, d, base+"/tracking", keys, single, 1), single, 1)
			}
		case "keys":
			p, k, err := tenant(base, admin)
			if err != nil {
				return nil, err
			}
			sweepPartners = append(sweepPartners, p)
			keys := []string{k}
			for _, n := range []int{1, 10, 100, 1000} {
				for len(keys) < n {
					k, err := newKey(base, admin, p)
					if err != nil {
						return nil, err
					}
					keys = append(keys, k)
				}
				add(fmt.Sprint(n), closedLoopKeys(conns, d, base+"/tracking", keys, single, 1), single, 1)
			}
		default:
			return nil, fmt.Errorf("-sweep: no dimension %q (have %s)", name, strings.Join(dimensions, ", "))
		}
		out[name] = rows
	}
	return out, nil
}

func newKey(base, admin, partnerID string) (string, error) {
	b, _ := json.Marshal(map[string]string{"name": "sweep"})
	st, raw, err := do("POST", base+"/partners/"+partnerID+"/api-keys", admin, b)
	if err != nil || st != 201 {
		return "", fmt.Errorf("new key: %d %v %s", st, err, raw)
	}
	var env struct{ Data struct{ APIKey string } }
	if err := json.Unmarshal(raw, &env); err != nil {
		return "", err
	}
	return env.Data.APIKey, nil
}

func printSweep(names []string, rows map[string][]row, conns int) {
	titles := map[string]string{
		"size":     fmt.Sprintf("event size (one event per request, %d connections)", conns),
		"batch":    fmt.Sprintf("events per bulk request (%d connections)", conns),
		"conns":    "connections (one event per request)",
		"partners": fmt.Sprintf("partners, one key each, requests spread over them (%d connections)", conns),
		"keys":     fmt.Sprintf("keys of one partner, requests spread over them (%d connections)", conns),
	}
	for _, name := range names {
		fmt.Printf("\n%s\n| value | events/s | MB/s | p50 | p99 | statuses |\n|---|---|---|---|---|---|\n", titles[name])
		for _, r := range rows[name] {
			fmt.Printf("| %s | %.0f | %.1f | %s | %s | %v |\n", r.Value, r.EventsSec, r.MBps, r.P50, r.P99, r.Statuses)
		}
	}
}
