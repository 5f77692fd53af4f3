package testenv

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// Every test that calls Heavy is run by make unit's pass without the race
// detector: its name is in the Makefile's HEAVY and its package in
// HEAVY_PKGS. A name missing would never run under make test.
func TestHeavyTestsRun(t *testing.T) {
	root, _ := filepath.Abs("../..")
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	setting := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `\s*:=\s*(.*)$`).FindSubmatch(mk)
		if m == nil {
			t.Fatalf("the Makefile sets no %s", name)
		}
		return strings.TrimSpace(string(m[1]))
	}
	names := strings.Split(setting("HEAVY"), "|")
	pkgs := strings.Fields(setting("HEAVY_PKGS"))
	testFunc := regexp.MustCompile(`(?m)^func (Test\w+)\(t \*testing\.T\) \{\n((?:\t.*\n|\n)*?)\}`)
	callsHeavy := regexp.MustCompile(`(?m)^\t(testenv\.)?Heavy\(t\)$`)
	found := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "data" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range testFunc.FindAllSubmatch(src, -1) {
			if !callsHeavy.Match(m[2]) {
				continue
			}
			found++
			name := string(m[1])
			pkg := "./" + filepath.ToSlash(filepath.Dir(must(filepath.Rel(root, path))))
			if !slices.Contains(names, name) {
				t.Errorf("%s (%s) calls Heavy but is not in the Makefile's HEAVY", name, pkg)
			}
			if !slices.Contains(pkgs, pkg) {
				t.Errorf("%s calls Heavy but its package %s is not in HEAVY_PKGS", name, pkg)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found == 0 {
		t.Fatal("no test calls Heavy: the pattern no longer finds them")
	}
	if found != len(names) {
		t.Errorf("HEAVY names %d tests, %d call Heavy", len(names), found)
	}
}

func must(s string, err error) string {
	if err != nil {
		panic(err)
	}
	return s
}
