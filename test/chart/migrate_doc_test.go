package chart_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/strvals"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// takeoverCommands are the shell commands of docs/migrate-from-fsm.md's
// "Takeover in two steps" block, backslash continuations joined.
func takeoverCommands(t *testing.T) []string {
	t.Helper()
	doc, err := os.ReadFile(filepath.Join(charttest.Dir(), "..", "..", "docs", "migrate-from-fsm.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(doc)
	i := strings.Index(s, "\n## Takeover in two steps")
	if i < 0 {
		t.Fatal(`docs/migrate-from-fsm.md has no "## Takeover in two steps" section`)
	}
	s = s[i:]
	start := strings.Index(s, "```sh\n")
	if start < 0 {
		t.Fatal("no ```sh block in the takeover section")
	}
	s = s[start+len("```sh\n"):]
	s = s[:strings.Index(s, "```")]
	var cmds []string
	for _, line := range strings.Split(strings.ReplaceAll(s, "\\\n", " "), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// helmValues are the values a `helm install|upgrade` command line passes:
// each -f file (read as files, which stands for what the user's file
// holds), then each --set, as Helm applies them; with --reuse-values on
// top of previous.
func helmValues(t *testing.T, cmd string, previous map[string]any, files map[string]string) map[string]any {
	t.Helper()
	args := strings.Fields(cmd)
	vals := map[string]any{}
	if slices.Contains(args, "--reuse-values") {
		vals = previous
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "-f" || a == "--values" || strings.HasPrefix(a, "--values="):
			name := strings.TrimPrefix(a, "--values=")
			if name == a {
				i++
				name = args[i]
			}
			doc, ok := files[name]
			if !ok {
				t.Fatalf("%q passes values file %q, which the document never writes", cmd, name)
			}
			if err := yaml.Unmarshal([]byte(doc), &vals); err != nil {
				t.Fatal(err)
			}
		case a == "--set":
			i++
			if err := strvals.ParseInto(args[i], vals); err != nil {
				t.Fatalf("%q: --set %s: %v", cmd, args[i], err)
			}
		}
	}
	return vals
}

// TestTakeoverCarriesFSMsSettings follows the takeover as the document
// writes it, over an FSM installed with a mesh name and CA Secret of its
// own (`fsm install --mesh-name blue`). The servers must run with FSM's
// settings: with the chart's defaults instead, FSM's fsm-webhook-blue sends
// its pods, once step 2 hands our pods the Service, to an injector of mesh
// "fsm" that skips every namespace labelled monitored-by=blue (pods created
// without a sidecar, silently), and a tresor CA of its own under another
// Secret name is a root FSM's caBundle does not trust.
func TestTakeoverCarriesFSMsSettings(t *testing.T) {
	// What `helm get values fsm -n fsm-system -o yaml` prints for such an
	// install (the user-supplied values of FSM's release).
	const fsmUserValues = "fsm: {meshName: blue, caBundleSecretName: blue-ca-bundle, trustDomain: blue.local}\n"
	files := map[string]string{}
	var vals map[string]any
	steps := 0
	for _, cmd := range takeoverCommands(t) {
		// A file the document writes from FSM's release.
		if strings.HasPrefix(cmd, "helm get values fsm ") {
			if i := strings.Index(cmd, "> "); i >= 0 {
				files[strings.TrimSpace(cmd[i+2:])] = fsmUserValues
			}
			continue
		}
		if !strings.HasPrefix(cmd, "helm install fsm-webhooks ") && !strings.HasPrefix(cmd, "helm upgrade fsm-webhooks ") {
			continue
		}
		steps++
		vals = helmValues(t, cmd, vals, files)
		r, err := charttest.Render(ns, vals)
		if err != nil {
			t.Fatalf("%s: render: %v", cmd, err)
		}
		got := args(t, mustFind(t, r, "Deployment", "fsm-webhooks"))
		for _, want := range []string{"--mesh-name=blue", "--ca-bundle-secret-name=blue-ca-bundle", "--trust-domain=blue.local"} {
			if !slices.Contains(got, want) {
				flag := want[:strings.IndexByte(want, '=')+1]
				i := slices.IndexFunc(got, func(a string) bool { return strings.HasPrefix(a, flag) })
				t.Errorf("docs/migrate-from-fsm.md takeover, %q: the servers run with %s, want FSM's %s", cmd, got[max(i, 0)], want)
			}
		}
		if r.Find("MutatingWebhookConfiguration", "fsm-webhook-blue") == nil {
			t.Errorf("docs/migrate-from-fsm.md takeover, %q: renders no fsm-webhook-blue, FSM's configuration to adopt", cmd)
		}
	}
	if steps != 2 {
		t.Fatalf("found %d helm commands of ours in the takeover block, want 2", steps)
	}
}
