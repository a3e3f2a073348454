// Package fsmcompat compares fsm-webhooks with FSM v1.5.1's recorded
// behaviour: the reference corpus in shared/fsm-reference, which lives beside
// the repository (<repo>/../shared; CI copies it there). Every difference
// that is not in a test's commented allowlist fails.
package fsmcompat

import (
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// referenceDir is <repo>/../shared/fsm-reference/<sub>. Without the corpus
// these tests prove nothing, so its absence fails them.
func referenceDir(t *testing.T, sub string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	repo := filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
	dir := filepath.Join(filepath.Dir(repo), "shared", "fsm-reference", sub)
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("FSM v1.5.1 reference corpus not found: %v (expected at <repo>/../shared/fsm-reference, repo %s; copy shared/ beside the repository)", err, repo)
	}
	return dir
}

// readJSON decodes the JSON file at path into v.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decoding %s: %v", path, err)
	}
}
