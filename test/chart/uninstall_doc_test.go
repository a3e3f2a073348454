package chart_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// noHooksUninstallSteps are the commands of the chart README's uninstall
// without the binary: the block right after "Without the binary".
func noHooksUninstallSteps(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(charttest.Dir(), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "Without the binary, `helm uninstall --no-hooks` followed by")
	if i < 0 {
		t.Fatal("chart README no longer has the uninstall steps without the binary")
	}
	s = s[i:]
	start := strings.Index(s, "```console\n")
	if start < 0 {
		t.Fatal("no console block after \"Without the binary\"")
	}
	s = s[start+len("```console\n"):]
	var cmds []string
	for _, line := range strings.Split(s[:strings.Index(s, "```")], "\n") {
		if line = strings.TrimSpace(line); line != "" {
			cmds = append(cmds, line)
		}
	}
	return cmds
}

// TestNoHooksUninstallLeavesFSMsWebhooks: the uninstall the chart README
// gives for when the hook cannot run is `helm uninstall --no-hooks` and the
// commands that follow. Helm deletes the webhook configurations itself unless
// the chart marks them helm.sh/resource-policy: keep, which it does exactly
// when they are FSM's: after a hand-back (handBack) and in takeover step 1
// (createServices=false), where FSM's injector and controller answer them.
// Those commands must not delete such a configuration unasked: FSM's
// injector writes fsm-webhook-<mesh> only when it starts, so every pod
// would be admitted without a sidecar, silently, until it restarts. (The
// hook keeps them by --keep-webhook-configurations and by checking whose
// pods the Services select.)
func TestNoHooksUninstallLeavesFSMsWebhooks(t *testing.T) {
	steps := noHooksUninstallSteps(t)
	for _, tc := range []struct {
		name, values string
		fsms         bool // the configurations are FSM's, kept by Helm
	}{
		{"installed", "", false},
		{"handed back", "fsm: {webhooks: {handBack: true}}", true},
		{"takeover step 1", "fsm: {webhooks: {createServices: false}, meshConfig: {create: false}}", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				name := "fsm-webhook-fsm"
				if kind == "ValidatingWebhookConfiguration" {
					name = "fsm-validator-mesh-fsm"
				}
				kept := mustFind(t, r, kind, name).GetAnnotations()["helm.sh/resource-policy"] == "keep"
				if kept != tc.fsms {
					t.Fatalf("%s %s kept by helm uninstall: %v, want %v", kind, name, kept, tc.fsms)
				}
				if !kept {
					continue // helm uninstall --no-hooks deletes it
				}
				for _, cmd := range steps {
					if strings.HasPrefix(cmd, "kubectl delete "+strings.ToLower(kind)+" ") {
						t.Errorf("chart README, uninstall without the binary: %q deletes %s, which is FSM's here (kept by Helm): pods would be admitted without a sidecar", cmd, name)
					}
				}
			}
		})
	}
}
