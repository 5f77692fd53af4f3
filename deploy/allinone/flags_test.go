package allinone_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/volcanion/tracking/deploy/allinone"
	"github.com/volcanion/tracking/edge"
	"github.com/volcanion/tracking/registry"
	"github.com/volcanion/tracking/reporter"
	settings "github.com/volcanion/tracking/shared/config"
	"github.com/volcanion/tracking/shared/natsembed"
	"github.com/volcanion/tracking/shared/provision"
	"github.com/volcanion/tracking/shared/storage/backend"
	"github.com/volcanion/tracking/shared/storage/cassandrastore"
	"github.com/volcanion/tracking/workers"
)

// Services whose Cassandra statements wait on one another send each at
// once; workers, which write many at once, hold them to go together
// (-cassandra-write-coalesce, cassandrastore.Config.WriteCoalesce). Each
// binary takes the flag, or the variable, over its default.
func TestWriteCoalescePerService(t *testing.T) {
	held := cassandrastore.DefaultConfig().WriteCoalesce
	if held == 0 {
		t.Fatal("the store's default holds nothing: the workers' would send at once")
	}
	for _, c := range []struct {
		name string
		new  func() (interface{ RegisterFlags(*flag.FlagSet) }, *backend.Config)
		want time.Duration
	}{
		{"workers", func() (interface{ RegisterFlags(*flag.FlagSet) }, *backend.Config) {
			b := workers.NewBinary()
			return b, &b.Store
		}, held},
		{"registry", func() (interface{ RegisterFlags(*flag.FlagSet) }, *backend.Config) {
			b := registry.NewBinary()
			return b, &b.Store
		}, 0},
		{"reporter", func() (interface{ RegisterFlags(*flag.FlagSet) }, *backend.Config) {
			b := reporter.NewBinary()
			return b, &b.Store
		}, 0},
	} {
		b, store := c.new()
		fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
		b.RegisterFlags(fs)
		if err := settings.Parse(fs, nil); err != nil || store.Coalesce != c.want {
			t.Errorf("%s: -cassandra-write-coalesce %v (%v), want %v", c.name, store.Coalesce, err, c.want)
		}
		if err := settings.Parse(fs, []string{"-cassandra-write-coalesce", "100us"}); err != nil || store.Coalesce != 100*time.Microsecond {
			t.Errorf("%s: set to 100us: %v, %v", c.name, store.Coalesce, err)
		}
	}
}

// Every setting of every component is a flag of the all-in-one too,
// under the component's prefix, and of the component's own binary
// unprefixed: one Config per component, registered by both.
func TestEveryComponentFlagInBoth(t *testing.T) {
	all := flag.NewFlagSet("volcanion", flag.ContinueOnError)
	allinone.NewBinary().RegisterFlags(all)
	binaries := map[string]interface{ RegisterFlags(*flag.FlagSet) }{
		"edge": edge.NewBinary(), "workers": workers.NewBinary(), "registry": registry.NewBinary(), "reporter": reporter.NewBinary(),
	}
	comps := []struct {
		binary, prefix string
		register       func(prefix string, fs *flag.FlagSet)
	}{
		{"edge", "edge-", func(p string, fs *flag.FlagSet) { c := edge.DefaultConfig(); c.RegisterFlags(p, fs) }},
		{"workers", "workers-", func(p string, fs *flag.FlagSet) { c := workers.DefaultConfig(); c.RegisterFlags(p, fs) }},
		{"registry", "registry-", func(p string, fs *flag.FlagSet) { c := registry.DefaultConfig(); c.RegisterFlags(p, fs) }},
		{"reporter", "reporter-", func(p string, fs *flag.FlagSet) { c := reporter.DefaultConfig(); c.RegisterFlags(p, fs) }},
		{"registry", "", func(p string, fs *flag.FlagSet) { c := provision.DefaultConfig(); c.RegisterFlags(p, fs) }},
		{"", "nats-", func(p string, fs *flag.FlagSet) { var c natsembed.Config; c.RegisterFlags(p, fs) }},
	}
	for _, c := range comps {
		own := flag.NewFlagSet("", flag.ContinueOnError)
		c.register("", own)
		var bin *flag.FlagSet
		if c.binary != "" {
			bin = flag.NewFlagSet(c.binary, flag.ContinueOnError)
			binaries[c.binary].RegisterFlags(bin)
		}
		n := 0
		own.VisitAll(func(f *flag.Flag) {
			n++
			if all.Lookup(c.prefix+f.Name) == nil {
				t.Errorf("the all-in-one has no -%s%s", c.prefix, f.Name)
			}
			if bin != nil && bin.Lookup(f.Name) == nil {
				t.Errorf("the %s binary has no -%s", c.binary, f.Name)
			}
		})
		if n == 0 {
			t.Errorf("component of %q registers no flag", c.prefix)
		}
	}
}

// The five binaries are the one runner (svc.Main) over their components:
// each main is a line.
func TestMainsAreTheRunner(t *testing.T) {
	for _, p := range []string{"../../edge/cmd/edge", "../../workers/cmd/workers", "../../registry/cmd/registry",
		"../../reporter/cmd/reporter", "cmd/volcanion"} {
		b, err := os.ReadFile(filepath.Join(p, "main.go"))
		if err != nil {
			t.Fatal(err)
		}
		src := string(b)
		if !strings.Contains(src, "func main() { svc.Main(") || strings.Count(src, "\n") > 20 {
			t.Errorf("%s/main.go is not one call of svc.Main:\n%s", p, src)
		}
	}
}

// The all-in-one's short names are its long ones: the environment of one
// does not override the other given on the command line; bad admin
// credentials are refused before anything is written, naming the flag given.
func TestAllinoneSettings(t *testing.T) {
	parse := func(args ...string) (*allinone.Binary, error) {
		b := allinone.NewBinary()
		fs := flag.NewFlagSet("volcanion", flag.ContinueOnError)
		b.RegisterFlags(fs)
		if err := settings.Parse(fs, args); err != nil {
			return b, err
		}
		return b, b.Validate()
	}
	t.Setenv("VT_EDGE_HTTP_LISTEN", "127.0.0.1:1")
	t.Setenv("VT_WORKERS_LOOPS", "7")
	b, err := parse("-http-listen", "127.0.0.1:2", "-workers", "3")
	if err != nil || b.Config.Edge.Listen != "127.0.0.1:2" || b.Config.Worker.Loops != 3 {
		t.Fatalf("%v: listen %s, loops %d; want the command line's", err, b.Config.Edge.Listen, b.Config.Worker.Loops)
	}
	dir := t.TempDir()
	for args, flagName := range map[string]string{
		"-admin-token abc":                         "-admin-token ",
		"-edge-admin-tokens short":                 "-edge-admin-tokens ",
		"-edge-admin-tokens-file " + dir + "/none": "-edge-admin-tokens-file ",
	} {
		_, err := parse(append([]string{"-data-dir", dir + "/data"}, strings.Fields(args)...)...)
		if err == nil || !strings.Contains(err.Error(), flagName) {
			t.Errorf("%s: %v, want an error naming %s", args, err, flagName)
		}
	}
	if _, err := os.Stat(dir + "/data"); err == nil {
		t.Error("a refused setting left a data directory behind")
	}
}
