package injector

import (
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// pipyStartsWith is what Pipy 1.5.12 (FSM v1.5.1's sidecar image, and ours)
// takes for --log-level, written from its src/main-options.cpp apart from
// rules.PipyLogLevels so the two are checked against each other: "debug",
// "debug:<topic>[+<topic>...]", "warn", "error", "info". Anything else
// throws "unknown log level" (or "unknown log topic") and pipy_main exits
// before it fetches its codebase: the pod never becomes Ready.
func pipyStartsWith(v string) bool {
	topics := []string{"alloc", "thread", "pipeline", "dump", "listener", "inbound", "outbound", "socket", "files",
		"subproc", "tcp", "udp", "http2", "elf", "bpf", "user", "codebase"}
	switch v {
	case "debug", "warn", "error", "info":
		return true
	}
	rest, ok := strings.CutPrefix(v, "debug:")
	if !ok {
		return false
	}
	for _, t := range strings.Split(rest, "+") {
		if !slices.Contains(topics, t) {
			return false
		}
	}
	return true
}

// TestSidecarLogLevelStartsPipy: every spec.sidecar.logLevel a MeshConfig
// can hold and the injector applies becomes a --log-level the sidecar
// starts with. FSM passed the value on unchecked ("--log-level=%s"), so
// the levels its chart schema offers but Pipy does not know (trace,
// warning, critical, off) made every sidecar exit at start; they are now
// replaced by the nearest Pipy level and reported in a Warning Event, and
// Pipy's own debug:<topic> form, which FSM ran with, no longer rejects the
// whole MeshConfig. (Found by a review against FSM's and Pipy's source.)
func TestSidecarLogLevelStartsPipy(t *testing.T) {
	for _, tc := range []struct {
		level, wantArg string
		wantEvent      []string
	}{
		{"error", "error", nil},
		{"debug", "debug", nil},
		{"info", "info", nil},
		{"warn", "warn", nil},
		{"debug:codebase", "debug:codebase", nil},
		{"debug:inbound+outbound", "debug:inbound+outbound", nil},
		{"trace", "debug", []string{`spec.sidecar.logLevel "trace" is not a level Pipy knows: sidecars start with --log-level=debug (FSM passed it on and Pipy exited at start)`}},
		{"warning", "warn", []string{`logLevel "warning"`, "--log-level=warn"}},
		{"critical", "error", []string{`logLevel "critical"`, "--log-level=error"}},
		{"off", "error", []string{`logLevel "off"`, "--log-level=error"}},
	} {
		t.Run(tc.level, func(t *testing.T) {
			mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
			mc.Spec.Sidecar.LogLevel = tc.level
			mc.Spec.Sidecar.SidecarImage = "registry.example.com/flomesh/pipy:1.5.12-custom"
			set, rec := cachedSettings(t, mc)
			if set.SidecarImage != mc.Spec.Sidecar.SidecarImage {
				t.Fatalf("sidecar image %q: the MeshConfig was not applied", set.SidecarImage)
			}
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: set, Mesh: testMesh, ProxyUUID: "u-1"})
			if err != nil {
				t.Fatal(err)
			}
			var arg string
			for _, c := range mut.Pod.Spec.Containers {
				if c.Name == SidecarContainerName {
					for _, a := range c.Args {
						if v, ok := strings.CutPrefix(a, "--log-level="); ok {
							arg = v
						}
					}
				}
			}
			if arg != tc.wantArg || !pipyStartsWith(arg) {
				t.Errorf("logLevel %q injected as --log-level=%s, want %s (one Pipy starts with)", tc.level, arg, tc.wantArg)
			}
			checkFellBackEvent(t, rec.take(), tc.wantEvent)
		})
	}
}

// TestSidecarLogLevelRefused: a level Pipy cannot start with and that is
// no alias still rejects the MeshConfig, naming what Pipy takes.
func TestSidecarLogLevelRefused(t *testing.T) {
	for level, want := range map[string]string{
		"verbose":    `spec.sidecar.logLevel: Unsupported value: "verbose": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`,
		"debug:http": `spec.sidecar.logLevel: Invalid value: "debug:http": unknown Pipy log topic "http"`,
	} {
		s := DefaultSettings()
		s.LogLevel = level
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("logLevel %q: Validate = %v, want it to contain %q", level, err, want)
		}
	}
}
