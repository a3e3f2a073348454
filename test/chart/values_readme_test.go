package chart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// helmValueRef is a Helm value named in backquotes, e.g. `fsm.vault.host` or
// `fsm.vault.{host,port}` (one brace group, expanded).
var helmValueRef = regexp.MustCompile("`(fsm\\.[A-Za-z0-9_.]*(?:\\{[A-Za-z0-9_,]+\\})?)`")

// expandRef expands one {a,b} group: fsm.x.{a,b} -> fsm.x.a, fsm.x.b.
func expandRef(ref string) []string {
	open := strings.IndexByte(ref, '{')
	if open < 0 {
		return []string{ref}
	}
	var out []string
	for _, alt := range strings.Split(ref[open+1:len(ref)-1], ",") {
		out = append(out, ref[:open]+alt)
	}
	return out
}

// TestREADMEValuesExist: every Helm value the root README's configuration
// table names exists in values.yaml, so the table cannot drift from the
// chart again.
func TestREADMEValuesExist(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(charttest.Dir(), "..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(charttest.Dir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		t.Fatal(err)
	}
	section := string(readme)
	if i := strings.Index(section, "## Configuration"); i >= 0 {
		section = section[i:]
	}
	if i := strings.Index(section[1:], "\n## "); i >= 0 {
		section = section[:i+1]
	}
	refs := helmValueRef.FindAllStringSubmatch(section, -1)
	if len(refs) < 20 {
		t.Fatalf("found %d Helm values in README's Configuration section; the pattern no longer matches the table", len(refs))
	}
	for _, m := range refs {
		for _, ref := range expandRef(m[1]) {
			var node any = values
			for _, key := range strings.Split(ref, ".") {
				mp, ok := node.(map[string]any)
				if !ok {
					node = nil
					break
				}
				node, ok = mp[key]
				if !ok {
					node = nil
					break
				}
			}
			if node == nil {
				t.Errorf("README names Helm value %s (in %s); values.yaml has no such key", ref, m[1])
			}
		}
	}
}

func TestExpandRef(t *testing.T) {
	for in, want := range map[string]string{
		"fsm.meshName":            "fsm.meshName",
		"fsm.vault.{host,port}":   "fsm.vault.host fsm.vault.port",
		"fsm.vault.secret.{name}": "fsm.vault.secret.name",
	} {
		if got := strings.Join(expandRef(in), " "); got != want {
			t.Errorf("expandRef(%q) = %q, want %q", in, got, want)
		}
	}
}
