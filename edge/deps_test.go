package edge

import (
	"os/exec"
	"strings"
	"testing"
)

// The edge stores nothing and embeds no server: its binary links neither
// nats-server nor a storage driver.
func TestEdgeBinaryDeps(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: the go command is not on PATH, so the edge binary's dependencies were not checked")
	}
	out, err := exec.Command(goCmd, "list", "-deps", "./cmd/edge").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 50 {
		t.Fatalf("go list -deps listed %d packages: %s", len(deps), out)
	}
	for _, d := range deps {
		for _, banned := range []string{"github.com/nats-io/nats-server", "github.com/apache/cassandra-gocql-driver", "github.com/gocql/gocql", "github.com/cockroachdb/pebble"} {
			if strings.HasPrefix(d, banned) {
				t.Errorf("the edge binary links %s", d)
			}
		}
	}
}
