package main

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/flomesh-io/fsm-webhooks"

// TestBinaryLinksNoTestCode lists what the binary links (`go list -deps`, the
// same graph `go build` compiles) and fails on any package of ours that exists
// for tests: everything under test/, the *test helper packages, and any package
// importing "testing". The standard library's testing must not be linked
// either: it would register test flags and pull test helpers into the image.
// `local` needs the asset builder, which is why that lives in
// internal/kubeassets and not under test/.
func TestBinaryLinksNoTestCode(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps",
		"-f", "{{.ImportPath}} {{join .Imports \" \"}}", ".").Output()
	if err != nil {
		var stderr []byte
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps: %v\n%s", err, stderr)
	}
	deps := parseDeps(t, out)
	if _, ok := deps[modulePath+"/cmd/fsm-webhooks"]; !ok {
		t.Fatalf("go list -deps does not list the binary itself; got %d packages", len(deps))
	}
	if _, ok := deps[modulePath+"/local"]; !ok {
		// The check below is only meaningful while local is linked.
		t.Fatalf("the binary no longer links %s/local; update this test", modulePath)
	}
	if _, ok := deps["testing"]; ok {
		t.Errorf("the binary links the standard library's testing package; importers: %v", importersOf(deps, "testing"))
	}
	for pkg := range deps {
		if reason := testOnly(pkg, deps[pkg]); reason != "" {
			t.Errorf("the binary links %s (%s); importers: %v", pkg, reason, importersOf(deps, pkg))
		}
	}
}

// testOnly says why pkg is test code of ours, or "" if it is not.
func testOnly(pkg string, imports []string) string {
	rel, ok := strings.CutPrefix(pkg, modulePath+"/")
	if !ok {
		return ""
	}
	switch {
	case rel == "test" || strings.HasPrefix(rel, "test/"):
		return "under test/"
	case strings.HasSuffix(rel[strings.LastIndex(rel, "/")+1:], "test"):
		return "a *test helper package"
	case slices.Contains(imports, "testing"):
		return `imports "testing"`
	}
	return ""
}

func TestTestOnly(t *testing.T) {
	for _, tc := range []struct {
		pkg     string
		imports []string
		want    string
	}{
		{modulePath + "/local", []string{"context"}, ""},
		{modulePath + "/internal/kubeassets", []string{"os/exec"}, ""},
		{modulePath + "/test/testenv", nil, "under test/"},
		{modulePath + "/test", nil, "under test/"},
		{modulePath + "/certs/certstest", nil, "a *test helper package"},
		{modulePath + "/webhooks", []string{"net/http", "testing"}, `imports "testing"`},
		{modulePath + "/testdata", nil, ""},                   // not under test/: only the exact segment counts
		{"k8s.io/client-go/testing", []string{"testing"}, ""}, // not ours
	} {
		if got := testOnly(tc.pkg, tc.imports); got != tc.want {
			t.Errorf("testOnly(%s, %v) = %q, want %q", tc.pkg, tc.imports, got, tc.want)
		}
	}
}

func parseDeps(t *testing.T, out []byte) map[string][]string {
	t.Helper()
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		deps[fields[0]] = fields[1:]
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading go list output: %v", err)
	}
	return deps
}

func importersOf(deps map[string][]string, pkg string) []string {
	var by []string
	for p, imports := range deps {
		if slices.Contains(imports, pkg) {
			by = append(by, p)
		}
	}
	slices.Sort(by)
	return by
}
