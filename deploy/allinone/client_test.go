package allinone_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/volcanion/tracking/deploy/allinone"
)

// sys is a running all-in-one under test.
type sys struct {
	t     testing.TB
	logs  *lockedBuffer // every log line the system wrote
	app   *allinone.App
	dir   string
	base  string
	admin string
}

func start(t testing.TB, dir string) *sys {
	t.Helper()
	return startWith(t, dir, func(*config) {})
}

func (s *sys) stop() {
	if s.app != nil {
		if err := s.app.Close(); err != nil {
			s.t.Errorf("close: %v", err)
		}
		s.app = nil
	}
}

// resp is a decoded envelope.
type resp struct {
	Status    int
	Header    http.Header
	Raw       []byte
	Success   bool            `json:"success"`
	Data      json.RawMessage `json:"data"`
	Message   string          `json:"message"`
	RequestID string          `json:"requestId"`
	Timestamp time.Time       `json:"timestamp"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Fields  []struct{ Field, Message string }
	} `json:"error"`
}

func (r resp) code() string {
	if r.Error == nil {
		return ""
	}
	return r.Error.Code
}

// do sends a request. auth is "admin", "" (none) or an API key.
func (s *sys) do(method, path, auth string, body any) resp {
	s.t.Helper()
	return s.send(s.request(method, path, auth, body))
}

// request makes the request do sends.
func (s *sys) request(method, path, auth string, body any) *http.Request {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewBufferString(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
	}
	req, _ := http.NewRequest(method, s.base+path, rd)
	switch {
	case auth == "admin":
		req.Header.Set("Authorization", "Bearer "+s.admin)
	case auth != "":
		req.Header.Set("X-Api-Key", auth)
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// send sends a prepared request and checks the answer is the envelope.
func (s *sys) send(req *http.Request) resp {
	s.t.Helper()
	method, path := req.Method, req.URL.Path
	hr, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer hr.Body.Close()
	raw, _ := io.ReadAll(hr.Body)
	r := resp{Status: hr.StatusCode, Header: hr.Header, Raw: raw}
	if err := json.Unmarshal(raw, &r); err != nil {
		s.t.Fatalf("%s %s: answer is not the JSON envelope: %v: %s", method, path, err, raw)
	}
	if r.RequestID == "" || r.Timestamp.IsZero() || r.Success != (hr.StatusCode < 300) {
		s.t.Fatalf("%s %s: incomplete envelope: %s", method, path, raw)
	}
	if !r.Success && (r.Error == nil || r.Error.Code == "" || r.Error.Message == "") {
		s.t.Fatalf("%s %s: error without code and message: %s", method, path, raw)
	}
	checkContract(s.t, strings.TrimSuffix(s.base, "/api/v1"), req, hr.StatusCode, hr.Header, raw)
	return r
}

// must sends a request and checks its status.
func (s *sys) must(want int, method, path, auth string, body any, out any) resp {
	s.t.Helper()
	r := s.do(method, path, auth, body)
	if r.Status != want {
		s.t.Fatalf("%s %s: status %d (%s %v), want %d", method, path, r.Status, r.code(), r.Error, want)
	}
	if out != nil {
		if err := json.Unmarshal(r.Data, out); err != nil {
			s.t.Fatalf("decode data: %v", err)
		}
	}
	return r
}

type idOnly struct {
	ID string `json:"id"`
}

// tenant creates a partner with sub-systems and a key.
func (s *sys) tenant(code string, subs ...string) (partnerID string, subIDs map[string]string, key string) {
	s.t.Helper()
	var p idOnly
	s.must(201, "POST", "/partners", "admin", map[string]string{"code": code, "name": "Partner " + code}, &p)
	subIDs = map[string]string{}
	for _, c := range subs {
		var ss idOnly
		s.must(201, "POST", "/partners/"+p.ID+"/sub-systems", "admin", map[string]string{"code": c, "name": "Sub " + c}, &ss)
		subIDs[c] = ss.ID
	}
	var k struct{ APIKey string }
	s.must(201, "POST", "/partners/"+p.ID+"/api-keys", "admin", map[string]string{"name": "k"}, &k)
	return p.ID, subIDs, k.APIKey
}

type subReport struct {
	TotalEvents  int64            `json:"totalEvents"`
	EventsByType map[string]int64 `json:"eventsByType"`
	TimeSeries   []struct {
		Timestamp time.Time `json:"timestamp"`
		Count     int64     `json:"count"`
	} `json:"timeSeries"`
}

// waitTotal polls the sub-system report until it shows want events.
func (s *sys) waitTotal(subID string, want int64) subReport {
	s.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	var rep subReport
	for {
		rep = subReport{}
		s.must(200, "GET", "/reports/sub-systems/"+subID+"?from="+time.Now().UTC().Add(-2*time.Hour).Format(time.RFC3339), "admin", nil, &rep)
		if rep.TotalEvents >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if rep.TotalEvents != want {
		s.t.Fatalf("sub-system %s: %d events counted, want %d", subID, rep.TotalEvents, want)
	}
	return rep
}

func ev(sub, typ string, extra ...any) map[string]any {
	m := map[string]any{"subSystemCode": sub, "eventType": typ}
	for i := 0; i+1 < len(extra); i += 2 {
		m[fmt.Sprint(extra[i])] = extra[i+1]
	}
	return m
}

type config = allinone.Config

func startWith(t testing.TB, dir string, mod func(*config)) *sys {
	t.Helper()
	cfg := allinone.DefaultConfig()
	cfg.DataDir, cfg.Edge.Listen = dir, "127.0.0.1:0"
	cfg.Worker.MaxWait = 50 * time.Millisecond
	cfg.Edge.RateLimit = 0 // tests that exercise limits set their own
	mod(&cfg)
	logs := &lockedBuffer{}
	app, err := allinone.Start(context.Background(), cfg, zerolog.New(logs).Level(zerolog.DebugLevel))
	if err != nil {
		t.Fatal(err)
	}
	s := &sys{t: t, logs: logs, app: app, dir: dir, base: "http://" + app.Addr() + "/api/v1", admin: app.AdminToken}
	t.Cleanup(func() { s.stop() })
	return s
}

// doAs sends an admin request with a given token.
func (s *sys) doAs(token, method, path string) resp {
	s.t.Helper()
	saved := s.admin
	s.admin = token
	defer func() { s.admin = saved }()
	return s.do(method, path, "admin", nil)
}

// lockedBuffer collects log output from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// doAsWithBody sends an admin-style request with a given token and body.
func (s *sys) doAsWithBody(token, method, path string, body any) resp {
	s.t.Helper()
	saved := s.admin
	s.admin = token
	defer func() { s.admin = saved }()
	return s.do(method, path, "admin", body)
}
