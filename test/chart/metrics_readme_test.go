package chart_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// codeMetric is a metric the binary's source defines: its type (counter,
// gauge, histogram; "" for a collector's prometheus.NewDesc) and labels.
type codeMetric struct {
	typ    string
	labels []string
	where  string
}

// codeMetrics finds every fsm_webhooks_ metric the non-test Go source outside
// test/ defines with prometheus.New{Counter,Gauge,Histogram}[Vec] or
// prometheus.NewDesc.
func codeMetrics(t *testing.T, root string) map[string]codeMetric {
	t.Helper()
	out := map[string]codeMetric{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if d.IsDir() {
			if rel == "test" || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !isIdent(sel.X, "prometheus") || !strings.HasPrefix(sel.Sel.Name, "New") {
				return true
			}
			kind := strings.TrimSuffix(strings.TrimPrefix(sel.Sel.Name, "New"), "Vec")
			var name string
			var labels []string
			switch kind {
			case "Desc":
				if len(call.Args) < 3 {
					return true
				}
				name = stringLit(call.Args[0])
				labels = stringList(call.Args[2])
				kind = ""
			case "Counter", "Gauge", "Histogram":
				if len(call.Args) == 0 {
					return true
				}
				opts, ok := call.Args[0].(*ast.CompositeLit)
				if !ok {
					return true
				}
				for _, e := range opts.Elts {
					if kv, ok := e.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "Name") {
						name = stringLit(kv.Value)
					}
				}
				if len(call.Args) > 1 {
					labels = stringList(call.Args[1])
				}
			default:
				return true
			}
			if strings.HasPrefix(name, "fsm_webhooks_") {
				out[name] = codeMetric{strings.ToLower(kind), labels, rel}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

func stringLit(e ast.Expr) string {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return ""
	}
	s, _ := strconv.Unquote(lit.Value)
	return s
}

func stringList(e ast.Expr) []string {
	cl, ok := e.(*ast.CompositeLit)
	if !ok {
		return nil // nil: no labels
	}
	var out []string
	for _, x := range cl.Elts {
		out = append(out, stringLit(x))
	}
	return out
}

// readmeMetric is one metric the README's Metrics table lists.
type readmeMetric struct {
	name, typ string
	labels    []string
}

var (
	backquoted    = regexp.MustCompile("`([^`]+)`")
	parenthesized = regexp.MustCompile(` *\([^)]*\)`)
	keypoolRow    = regexp.MustCompile("^`(fsm_webhooks_[a-z_]+_)\\*` \\(([a-z_, ]+)\\)$")
)

// readmeMetrics parses the README's Metrics table. A row lists one or more
// names; `_rest` after a full name replaces the first name's tail from its
// word `rest` begins with (else its last two words); `prefix_*` (a, b)
// stands for prefix_a and prefix_b, with or without _total. Types and
// labels are one per name ("gauge, counter"; "field, —") or one for all.
func readmeMetrics(t *testing.T, readme string) []readmeMetric {
	t.Helper()
	i := strings.Index(readme, "\n## Metrics\n")
	if i < 0 {
		t.Fatal(`README.md has no "## Metrics" section`)
	}
	section := readme[i+1:]
	if j := strings.Index(section[1:], "\n## "); j >= 0 {
		section = section[:j+1]
	}
	var out []readmeMetric
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `fsm_webhooks_") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) < 4 {
			t.Fatalf("README Metrics row has %d cells, want 4: %s", len(cells), line)
		}
		var names []string
		if m := keypoolRow.FindStringSubmatch(cells[0]); m != nil {
			for _, part := range strings.Split(m[2], ", ") {
				names = append(names, m[1]+part)
			}
		} else {
			for _, m := range backquoted.FindAllStringSubmatch(cells[0], -1) {
				n := m[1]
				if strings.HasPrefix(n, "_") && len(names) > 0 {
					first := names[0]
					word := strings.SplitN(n[1:], "_", 2)[0]
					if k := strings.Index(first, "_"+word+"_"); k >= 0 {
						n = first[:k] + n
					} else {
						words := strings.Split(first, "_")
						n = strings.Join(words[:len(words)-2], "_") + n
					}
				}
				names = append(names, n)
			}
		}
		perName := func(cell string, split bool) []string {
			parts := strings.Split(cell, ", ")
			if split && len(parts) == len(names) {
				return parts
			}
			all := make([]string, len(names))
			for i := range all {
				all[i] = cell
			}
			return all
		}
		types := perName(cells[1], true)
		// Labels: "webhook, secret" are every name's; "field, —" one per
		// name (a "—" marks that form). Parenthesized label values go.
		labelCell := parenthesized.ReplaceAllString(strings.ReplaceAll(cells[2], "`", ""), "")
		labelCells := perName(labelCell, strings.Contains(labelCell, "—"))
		for k, n := range names {
			var labels []string
			for _, l := range strings.Split(labelCells[k], ", ") {
				if l = strings.TrimSpace(l); l != "—" && l != "" {
					labels = append(labels, l)
				}
			}
			out = append(out, readmeMetric{n, strings.TrimSpace(strings.SplitN(types[k], " (", 2)[0]), labels})
		}
	}
	return out
}

// TestREADMEMetricsTable: the README's Metrics table lists every metric the
// binary defines, each with its type and labels, and nothing else.
func TestREADMEMetricsTable(t *testing.T) {
	root := filepath.Join(charttest.Dir(), "..", "..")
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	code := codeMetrics(t, root)
	if len(code) < 30 {
		t.Fatalf("found %d metrics in the source; the scan no longer finds them", len(code))
	}
	listed := map[string]bool{}
	for _, m := range readmeMetrics(t, string(readme)) {
		c, ok := code[m.name]
		if !ok {
			c, ok = code[m.name+"_total"]
			m.name += "_total"
		}
		if !ok {
			t.Errorf("README lists metric %s; no code defines it", strings.TrimSuffix(m.name, "_total"))
			continue
		}
		listed[m.name] = true
		if c.typ != "" && !strings.Contains(m.typ, c.typ) {
			t.Errorf("README gives %s the type %q; %s defines a %s", m.name, m.typ, c.where, c.typ)
		}
		if !slices.Equal(m.labels, c.labels) {
			t.Errorf("README gives %s the labels %q; %s defines %q", m.name, m.labels, c.where, c.labels)
		}
	}
	for name, c := range code {
		if !listed[name] {
			t.Errorf("%s (%s) is missing from README's Metrics table", name, c.where)
		}
	}
}
