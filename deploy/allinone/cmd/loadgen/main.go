// Command loadgen drives an edge with tracking events and reports throughput
// and latency percentiles. It only targets loopback addresses, and its
// duration and concurrency are bounded.
//
//	loadgen -admin-token $(cat data/admin-token) -duration 10s -concurrency 32 [-bulk 100]
//
// Without -key it creates a partner, a sub-system and a key first (admin token needed).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/volcanion/tracking/deploy/allinone/internal/loopback"
)

func main() {
	base := flag.String("url", "http://127.0.0.1:8080/api/v1", "edge API base URL (loopback only)")
	key := flag.String("key", "", "API key (default: create a partner, sub-system and key)")
	admin := flag.String("admin-token", "", "admin token, to create the partner when -key is not given")
	sub := flag.String("sub-system", "web", "sub-system code")
	conc := flag.Int("concurrency", 32, "concurrent clients (1-512)")
	dur := flag.Duration("duration", 10*time.Second, "how long to run (at most 5m)")
	bulk := flag.Int("bulk", 0, "events per request through /tracking/bulk (0: single events through /tracking)")
	flag.Parse()
	if err := run(*base, *key, *admin, *sub, *conc, *dur, *bulk); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 512}}

func post(url, auth string, body any) (int, json.RawMessage, error) {
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", url, bytes.NewReader(data))
	if strings.HasPrefix(auth, "vtk_") {
		req.Header.Set("X-Api-Key", auth)
	} else {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var env struct{ Data json.RawMessage }
	json.Unmarshal(raw, &env)
	return resp.StatusCode, env.Data, nil
}

func setup(base, admin, sub string) (string, error) {
	if admin == "" {
		return "", errors.New("give -key, or -admin-token to create one")
	}
	create := func(url string, body, out any) error {
		st, data, err := post(url, admin, body)
		if err != nil || st != 201 {
			return fmt.Errorf("setup %s: %d %v %s", url, st, err, data)
		}
		return json.Unmarshal(data, out)
	}
	var p, s, k struct{ ID, APIKey string }
	// A limit far above the load: this measures the system, not the limiter's refusals.
	if err := create(base+"/partners", map[string]any{"code": fmt.Sprintf("load-%d", time.Now().UnixNano()), "name": "Load test", "rateLimit": 1_000_000}, &p); err != nil {
		return "", err
	}
	if err := create(base+"/partners/"+p.ID+"/sub-systems", map[string]string{"code": sub, "name": sub}, &s); err != nil {
		return "", err
	}
	if err := create(base+"/partners/"+p.ID+"/api-keys", map[string]string{"name": "load"}, &k); err != nil {
		return "", err
	}
	return k.APIKey, nil
}

func run(base, key, admin, sub string, conc int, dur time.Duration, bulk int) error {
	switch {
	case conc < 1 || conc > 512:
		return errors.New("-concurrency must be 1-512")
	case dur <= 0 || dur > 5*time.Minute:
		return errors.New("-duration must be at most 5m")
	case bulk < 0 || bulk > 500:
		return errors.New("-bulk must be 0-500")
	}
	if err := loopback.Check(base); err != nil {
		return err
	}
	var err error
	if key == "" {
		if key, err = setup(base, admin, sub); err != nil {
			return err
		}
	}
	path, body := base+"/tracking", any(map[string]any{"subSystemCode": sub, "eventType": "page_view", "metadata": map[string]string{"path": "/pricing"}})
	perReq := 1
	if bulk > 0 {
		var evs []any
		for i := 0; i < bulk; i++ {
			evs = append(evs, map[string]any{"subSystemCode": sub, "eventType": "page_view", "metadata": map[string]int{"i": i}})
		}
		path, body, perReq = base+"/tracking/bulk", map[string]any{"events": evs}, bulk
	}
	var mu sync.Mutex
	var lat []time.Duration
	statuses := map[int]int{}
	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			local := map[int]int{}
			for time.Now().Before(deadline) {
				t0 := time.Now()
				st, _, err := post(path, key, body)
				if err != nil {
					st = -1
				}
				mine = append(mine, time.Since(t0))
				local[st]++
			}
			mu.Lock()
			lat = append(lat, mine...)
			for k, v := range local {
				statuses[k] += v
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	ok := statuses[202]
	fmt.Printf("requests %d in %s with %d clients, %d events per request\n", len(lat), elapsed.Round(time.Millisecond), conc, perReq)
	fmt.Printf("accepted %d events: %.0f events/s\n", ok*perReq, float64(ok*perReq)/elapsed.Seconds())
	fmt.Printf("latency p50 %s  p90 %s  p99 %s  max %s\n", pct(0.5), pct(0.9), pct(0.99), lat[len(lat)-1])
	fmt.Printf("statuses %v\n", statuses)
	return nil
}
