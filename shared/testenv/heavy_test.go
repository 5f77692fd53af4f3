package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
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
// HEAVY_PKGS. A name missing would never run under make test. Heavy is
// found wherever a test file calls it, and must be called by a top-level
// Test function itself (a helper's or a subtest's call would skip more, or
// less, than the name the Makefile runs).
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
	if !strings.Contains(string(mk), "VT_HEAVY_PASS=1 $(GO) test") {
		t.Error("the Makefile's pass of heavy tests does not set VT_HEAVY_PASS=1")
	}
	var found []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (d.Name() == "data" || d.Name() == "node_modules" || d.Name() == "bin" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		pkg := "./" + filepath.ToSlash(filepath.Dir(rel))
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			// Calls at the top of the function's own body, and anywhere
			// below it (closures, nested blocks).
			var top, nested int
			for _, st := range fn.Body.List {
				if isHeavyCall(st) {
					top++
				}
			}
			ast.Inspect(fn.Body, func(n ast.Node) bool {
				if c, ok := n.(*ast.CallExpr); ok && calleeIsHeavy(c) {
					nested++
				}
				return true
			})
			nested -= top
			name := fn.Name.Name
			isTest := fn.Recv == nil && strings.HasPrefix(name, "Test") && name != "TestMain"
			switch {
			case top+nested == 0 || (pkg == "./shared/testenv" && name == "Heavy"):
				continue
			case !isTest || nested > 0:
				t.Errorf("%s: %s calls Heavy other than in the body of a Test function itself", rel, name)
				continue
			}
			found = append(found, name)
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
	if len(found) == 0 {
		t.Fatal("no test calls Heavy: the search no longer finds them")
	}
	for _, n := range names {
		if !slices.Contains(found, n) {
			t.Errorf("HEAVY names %s, which does not call Heavy", n)
		}
	}
}

func isHeavyCall(st ast.Stmt) bool {
	e, ok := st.(*ast.ExprStmt)
	if !ok {
		return false
	}
	c, ok := e.X.(*ast.CallExpr)
	return ok && calleeIsHeavy(c)
}

func calleeIsHeavy(c *ast.CallExpr) bool {
	switch f := c.Fun.(type) {
	case *ast.SelectorExpr:
		x, ok := f.X.(*ast.Ident)
		return ok && x.Name == "testenv" && f.Sel.Name == "Heavy"
	case *ast.Ident:
		return f.Name == "Heavy"
	}
	return false
}
