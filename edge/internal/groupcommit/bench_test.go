package groupcommit_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/volcanion/tracking/edge/internal/groupcommit"
	"github.com/volcanion/tracking/shared/natsembed"
)

// TestMain doubles as a NATS server for BenchmarkPublish, so that the
// benchmark's allocations are the publisher's and its client's only.
func TestMain(m *testing.M) {
	if dir := os.Getenv("GC_CHILD_NATS_DIR"); dir != "" {
		ns, err := natsembed.Start(natsembed.Config{DataDir: dir, Host: "127.0.0.1", Port: -1, Name: "bench"})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("NATS", ns.ClientURL())
		io.Copy(io.Discard, os.Stdin) // until the parent closes it
		ns.Shutdown()
		ns.WaitForShutdown()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// childNATS runs a JetStream server (fsync on, as the all-in-one's) in a
// child process until the benchmark ends.
func childNATS(b *testing.B) string {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "GC_CHILD_NATS_DIR="+b.TempDir())
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "NATS ") {
		b.Fatalf("child server: %q %v", line, err)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "NATS "))
}

// BenchmarkPublish is the edge's publish step against a server in another
// process: a lone event (published on its own), and a bulk of 100 (one
// atomic batch). allocs/op counts the publisher and the NATS client.
func BenchmarkPublish(b *testing.B) {
	nc, err := nats.Connect(childNATS(b))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, AllowAtomicPublish: true,
		Duplicates: 30 * time.Second}); err != nil {
		b.Fatal(err)
	}
	p := groupcommit.New(groupcommit.Config{}, nc, js)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go p.Run(rctx)
	body := make([]byte, 400)
	n := 0
	msgs := func(k int) []*nats.Msg {
		out := make([]*nats.Msg, k)
		for i := range out {
			n++
			out[i] = &nats.Msg{Subject: "s.p.s", Data: body, Header: nats.Header{jetstream.MsgIDHeader: []string{fmt.Sprint("m", n)}}}
		}
		return out
	}
	for _, c := range []struct {
		name string
		per  int
	}{{"one", 1}, {"bulk100", 100}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ms := msgs(c.per) // the messages are the caller's (newMsgs), not the publisher's
				b.StartTimer()
				for _, a := range p.Publish(ctx, ms) {
					if a.Err != nil {
						b.Fatal(a.Err)
					}
				}
			}
			b.ReportMetric(float64(b.N*c.per)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
