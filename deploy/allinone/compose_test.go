package allinone_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// flagsOf runs a binary with -h and returns the flags it defines.
func flagsOf(t *testing.T, bin string, args ...string) map[string]bool {
	out, _ := exec.Command(bin, append(args, "-h")...).CombinedOutput()
	flags := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\s+-([a-z0-9-]+)`).FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = true
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h listed no flags:\n%s", bin, out)
	}
	return flags
}

// TestComposeMatchesBinaries: no Docker engine or cluster runs here, so this
// checks what a compose or Kubernetes run would depend on: every VT_*
// variable and command-line flag in docker-compose.yml and deploy/k8s is a
// real flag of the binary the image builds, and every variable nats.conf
// needs is set on each NATS node.
func TestComposeMatchesBinaries(t *testing.T) {
	root, _ := filepath.Abs("../..")
	bins := t.TempDir()
	pkgs := map[string]string{"edge": "./edge/cmd/edge", "workers": "./workers/cmd/workers", "registry": "./registry/cmd/registry",
		"reporter": "./reporter/cmd/reporter", "natsauth": "./deploy/allinone/cmd/natsauth"}
	args := []string{"build", "-o", bins + "/"}
	for _, p := range pkgs {
		args = append(args, p)
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The Dockerfile builds ./<SERVICE>/cmd/<SERVICE>; natsauth is the exception it names.
	docker, _ := os.ReadFile(filepath.Join(root, "deploy/docker/service.Dockerfile"))
	if !strings.Contains(string(docker), "pkg=./$SERVICE/cmd/$SERVICE") || !strings.Contains(string(docker), "pkg="+pkgs["natsauth"]) {
		t.Fatal("service.Dockerfile no longer builds the packages this test checks")
	}

	raw, err := os.ReadFile(filepath.Join(root, "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Build struct {
				Dockerfile string            `yaml:"dockerfile"`
				Args       map[string]string `yaml:"args"`
			} `yaml:"build"`
			Command     []string          `yaml:"command"`
			Environment map[string]string `yaml:"environment"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	conf, _ := os.ReadFile(filepath.Join(root, "nats.conf"))
	natsVars := regexp.MustCompile(`\$(NATS_[A-Z0-9_]+)`).FindAllStringSubmatch(string(conf), -1)
	checked := 0
	for name, svc := range compose.Services {
		if strings.HasSuffix(svc.Build.Dockerfile, "nats.Dockerfile") {
			for _, v := range natsVars {
				if svc.Environment[v[1]] == "" {
					t.Errorf("%s: nats.conf needs %s, which the service does not set", name, v[1])
				}
			}
			checked++
			continue
		}
		binName := svc.Build.Args["SERVICE"]
		if binName == "" {
			continue // a stock image (Cassandra, Redis)
		}
		bin := filepath.Join(bins, binName)
		var sub []string
		cmdArgs := svc.Command
		if binName == "natsauth" && len(cmdArgs) > 0 {
			sub, cmdArgs = []string{cmdArgs[0]}, cmdArgs[1:]
		}
		flags := flagsOf(t, bin, sub...)
		for k := range svc.Environment {
			if !strings.HasPrefix(k, "VT_") {
				t.Errorf("%s: variable %s is not a VT_ setting", name, k)
				continue
			}
			if f := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "VT_")), "_", "-"); !flags[f] {
				t.Errorf("%s: %s names no flag of %s (no -%s)", name, k, binName, f)
			}
		}
		for _, a := range cmdArgs {
			if strings.HasPrefix(a, "-") && !flags[strings.TrimLeft(a, "-")] {
				t.Errorf("%s: command flag %s is not a flag of %s", name, a, binName)
			}
		}
		if needsAdminTokens(binName, cmdArgs) && svc.Environment["VT_ADMIN_TOKENS"] == "" && svc.Environment["VT_ADMIN_TOKENS_FILE"] == "" {
			t.Errorf("%s: %s checks the admin credential but gets no admin token", name, binName)
		}
		checked++
	}
	if checked < 9 {
		t.Fatalf("only %d services checked", checked)
	}
	checkK8s(t, root, bins, natsVars)
}

// checkK8s applies the same rule to deploy/k8s: a container of image
// volcanion/<binary> may only be given that binary's settings, and the NATS
// pods every variable nats.conf needs.
func checkK8s(t *testing.T, root, bins string, natsVars [][]string) {
	type container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name string `yaml:"name"`
		} `yaml:"env"`
		EnvFrom []struct {
			ConfigMapRef struct {
				Name string `yaml:"name"`
			} `yaml:"configMapRef"`
		} `yaml:"envFrom"`
	}
	type doc struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			Template struct {
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
		Metadata struct {
			Name string `yaml:"name"`
		} `yaml:"metadata"`
	}
	files, _ := filepath.Glob(filepath.Join(root, "deploy/k8s/*.yaml"))
	var docs []doc
	configMaps := map[string]map[string]string{}
	for _, f := range files {
		raw, _ := os.ReadFile(f)
		dec := yaml.NewDecoder(strings.NewReader(string(raw)))
		for {
			var d doc
			if err := dec.Decode(&d); err != nil {
				if err.Error() != "EOF" {
					t.Fatalf("%s: %v", f, err)
				}
				break
			}
			if d.Kind == "ConfigMap" {
				configMaps[d.Metadata.Name] = d.Data
			}
			docs = append(docs, d)
		}
	}
	checked := 0
	for _, d := range docs {
		for _, c := range d.Spec.Template.Spec.Containers {
			img := strings.TrimPrefix(strings.SplitN(c.Image, ":", 2)[0], "volcanion/")
			names := map[string]bool{}
			for _, e := range c.Env {
				names[e.Name] = true
			}
			for _, ef := range c.EnvFrom {
				cm, ok := configMaps[ef.ConfigMapRef.Name]
				if !ok {
					t.Errorf("%s/%s: no ConfigMap %q in deploy/k8s", d.Metadata.Name, c.Name, ef.ConfigMapRef.Name)
				}
				for k := range cm {
					names[k] = true
				}
			}
			if img == "nats" {
				for _, v := range natsVars {
					if !names[v[1]] {
						t.Errorf("k8s %s: nats.conf needs %s", d.Metadata.Name, v[1])
					}
				}
				checked++
				continue
			}
			flags := flagsOf(t, filepath.Join(bins, img))
			if needsAdminTokens(img, c.Args) && !names["VT_ADMIN_TOKENS"] && !names["VT_ADMIN_TOKENS_FILE"] {
				t.Errorf("k8s %s/%s: %s checks the admin credential but gets no admin token", d.Metadata.Name, c.Name, img)
			}
			for n := range names {
				if f := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(n, "VT_")), "_", "-"); !strings.HasPrefix(n, "VT_") || !flags[f] {
					t.Errorf("k8s %s/%s: %s is not a setting of %s", d.Metadata.Name, c.Name, n, img)
				}
			}
			for _, a := range c.Args {
				if strings.HasPrefix(a, "-") && !flags[strings.TrimLeft(a, "-")] {
					t.Errorf("k8s %s/%s: %s is not a flag of %s", d.Metadata.Name, c.Name, a, img)
				}
			}
			checked++
		}
	}
	if checked < 6 {
		t.Fatalf("only %d Kubernetes containers checked", checked)
	}
}

// needsAdminTokens: the services that check the admin credential (the edge
// over HTTP; the registry, the reporter and the workers' dead-letter service
// when the edge forwards it) must be given the admin tokens; the registry's
// one-shot -migrate and -provision runs need none.
func needsAdminTokens(bin string, args []string) bool {
	for _, a := range args {
		if a == "-migrate" || a == "-provision" {
			return false
		}
	}
	return bin == "edge" || bin == "registry" || bin == "reporter" || bin == "workers"
}
