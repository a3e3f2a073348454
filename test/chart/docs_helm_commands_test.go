package chart_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// userDocs are the documents a platform team follows: the READMEs and docs/.
func userDocs(t *testing.T) map[string]string {
	t.Helper()
	root := filepath.Join(charttest.Dir(), "..", "..")
	var paths []string
	for _, pattern := range []string{"README.md", "docs/*.md", "*/README.md", "*/*/README.md", "charts/fsm-webhooks/README.md"} {
		m, err := filepath.Glob(filepath.Join(root, pattern))
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, m...)
	}
	docs := map[string]string{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, p)
		docs[rel] = string(data)
	}
	return docs
}

var (
	fencedBlock = regexp.MustCompile("(?s)```(?:sh|console|bash)?\n(.*?)```")
	inlineCode  = regexp.MustCompile("`([^`]+)`")
)

// helmCommands are the `helm ...` command lines of doc: each line of a
// fenced block (backslash continuations joined) and each inline code span
// (line breaks inside it read as spaces, as Markdown renders them).
func helmCommands(doc string) []string {
	var cmds []string
	for _, m := range fencedBlock.FindAllStringSubmatch(doc, -1) {
		for _, line := range strings.Split(strings.ReplaceAll(m[1], "\\\n", " "), "\n") {
			if line = strings.TrimSpace(line); strings.HasPrefix(line, "helm ") {
				cmds = append(cmds, line)
			}
		}
	}
	prose := fencedBlock.ReplaceAllString(doc, "")
	for _, m := range inlineCode.FindAllStringSubmatch(prose, -1) {
		if s := strings.Join(strings.Fields(m[1]), " "); strings.HasPrefix(s, "helm ") {
			cmds = append(cmds, s)
		}
	}
	return cmds
}

// helmFlagsWithValue take the next word as their value.
var helmFlagsWithValue = []string{"-n", "--namespace", "-f", "--values", "--set", "--set-string", "--timeout", "-o", "--output", "--version"}

// helmPositionals are a helm command's words that are neither flags nor
// their values, the subcommand first.
func helmPositionals(cmd string) []string {
	args := strings.Fields(cmd)[1:]
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case slices.Contains(helmFlagsWithValue, a):
			i++
		case strings.HasPrefix(a, "-"), a == ">" || strings.HasPrefix(a, ">"):
		default:
			pos = append(pos, a)
		}
	}
	return pos
}

// TestDocsHelmCommandsOfTheRelease: every helm command the documents give
// for this chart's release, as an install, upgrade or uninstall step a
// platform team copies (migration, rollback, uninstall), runs as written:
// `helm install|upgrade` needs the release and the chart (`helm upgrade
// fsm-webhooks --reuse-values` stops at "requires 2 arguments"), and each
// names the release's namespace (without it Helm looks in the kubeconfig's
// namespace and finds no release, or installs a second one there).
func TestDocsHelmCommandsOfTheRelease(t *testing.T) {
	checked := 0
	for name, doc := range userDocs(t) {
		for _, cmd := range helmCommands(doc) {
			pos := helmPositionals(cmd)
			if len(pos) < 2 || pos[1] != charttest.ReleaseName {
				continue
			}
			args := strings.Fields(cmd)
			switch pos[0] {
			case "install", "upgrade":
				if len(pos) < 3 {
					t.Errorf("%s: %q names no chart: helm %s needs the release and the chart", name, cmd, pos[0])
				}
			case "uninstall", "rollback", "get", "status":
			default:
				continue
			}
			checked++
			if !slices.Contains(args, "-n") && !slices.Contains(args, "--namespace") {
				t.Errorf("%s: %q names no namespace (-n)", name, cmd)
			}
		}
	}
	if checked < 8 {
		t.Fatalf("checked %d helm commands of release %s in the documents; the parser no longer finds them", checked, charttest.ReleaseName)
	}
}
