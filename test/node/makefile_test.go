package node

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestMakefileVerboseGoTestsStream: every verbose `go test` of the Makefile
// (the node suite's among them) names exactly one package. Given several, go
// test holds each package's output until that package ends (unless -p 1),
// so `make test` would show nothing of the node suite's tens of minutes
// until it is over: the README promises progress for anything slow.
func TestMakefileVerboseGoTestsStream(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for i, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if !strings.HasPrefix(line, "\t") || len(fields) < 2 || fields[1] != "test" || !strings.Contains(fields[0], "$(GO)") {
			continue
		}
		verbose, tags := false, ""
		var pkgs []string
		for j, f := range fields {
			switch {
			case f == "-v":
				verbose = true
			case f == "-tags" && j+1 < len(fields):
				tags = fields[j+1]
			case strings.HasPrefix(f, "./"):
				pkgs = append(pkgs, f)
			}
		}
		if !verbose {
			continue
		}
		checked++
		args := []string{"list"}
		if tags != "" {
			args = append(args, "-tags", tags)
		}
		cmd := exec.Command("go", append(args, pkgs...)...)
		cmd.Dir = testenv.RepoRoot()
		out, err := cmd.Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("Makefile:%d: go %s: %v\n%s", i+1, strings.Join(cmd.Args[1:], " "), err, ee.Stderr)
			}
			t.Fatalf("Makefile:%d: go list: %v", i+1, err)
		}
		if listed := strings.Fields(string(out)); len(listed) != 1 {
			t.Errorf("Makefile:%d: a verbose go test of %d packages %v buffers each one's output until it ends; give it one package:\n%s",
				i+1, len(listed), listed, line)
		}
	}
	if checked == 0 {
		t.Fatal("found no verbose go test in the Makefile")
	}
}
