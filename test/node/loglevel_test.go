//go:build e2enode

package node_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestPipyStartsWithInjectedLogLevel runs the Pipy the meshed pods run with
// the --log-level the injector writes for each spec.sidecar.logLevel a
// MeshConfig can hold (FSM's chart levels and Pipy's debug:<topic>), and
// requires it to start. It first holds the rule to Pipy itself: the levels
// FSM passed on unchanged (trace, warning, critical, off) and an unknown
// topic make this Pipy exit at start, which is why the injector replaces
// them.
func TestPipyStartsWithInjectedLogLevel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	bin, err := meshassets.Pipy(ctx, meshassets.PipySource(testenv.RepoRoot()), os.Stderr)
	if err != nil {
		t.Fatalf("Pipy %s: %v", meshassets.PipyVersion, err)
	}
	for level, starts := range map[string]bool{
		"debug": true, "info": true, "warn": true, "error": true, "debug:codebase": true, "debug:inbound+outbound": true,
		"trace": false, "warning": false, "critical": false, "off": false, "debug:http": false,
	} {
		if err := pipyStarts(ctx, t, bin, level); (err == nil) != starts {
			t.Errorf("pipy --log-level=%s: %v; want it to start: %v", level, err, starts)
		}
	}

	mesh := injector.Mesh{Name: "fsm", FSMNamespace: "fsm-system", TrustDomain: "cluster.local", ClusterDomain: "cluster.local",
		SidecarImage: injector.DefaultSidecarImage, InitImage: injector.DefaultInitImage, HealthcheckImage: injector.DefaultHealthcheckImage}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app", Labels: map[string]string{fsmnames.MonitoredByLabel: "fsm"}}}
	for _, level := range []string{"trace", "debug", "info", "warning", "warn", "error", "critical", "off", "debug:codebase", "debug:inbound+outbound"} {
		mc := &configv1alpha3.MeshConfig{}
		mc.Spec.Sidecar.LogLevel = level
		set := injector.SettingsFromMeshConfig(mc)
		if err := set.Validate(); err != nil {
			t.Errorf("logLevel %q refused: %v", level, err)
			continue
		}
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "app"},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}}}
		m, err := injector.Mutate(injector.MutateInput{Pod: pod, Namespace: ns, Settings: set, Mesh: mesh, ProxyUUID: "u-1"})
		if err != nil {
			t.Fatalf("logLevel %q: %v", level, err)
		}
		arg := ""
		for _, c := range m.Pod.Spec.Containers {
			for _, a := range c.Args {
				if v, ok := strings.CutPrefix(a, "--log-level="); ok && c.Name == injector.SidecarContainerName {
					arg = v
				}
			}
		}
		if err := pipyStarts(ctx, t, bin, arg); err != nil {
			t.Errorf("MeshConfig logLevel %q is injected as --log-level=%s, and Pipy does not start: %v", level, arg, err)
		}
	}
}

// pipyStarts runs Pipy with level and a script that listens on a free
// loopback port: nil once that port accepts a connection. A level Pipy
// refuses ends it before the script loads. (It is stopped by a kill: Pipy
// 1.5.12 can hang in its own exit, see pipyexit_test.go.)
func pipyStarts(ctx context.Context, t *testing.T, bin, level string) error {
	port := freeport.Must(t)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--log-level="+level, "--eval", fmt.Sprintf("pipy().listen('%s').dummy()", addr))
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	// out is read only once Wait has returned: its copier writes it until then.
	stop := func() { _ = cmd.Process.Kill(); <-exited }
	deadline := time.After(30 * time.Second)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("exited (%v): %s", err, strings.TrimSpace(out.String()))
		case <-deadline:
			stop()
			return fmt.Errorf("not listening on %s after 30 s: %s", addr, strings.TrimSpace(out.String()))
		case <-time.After(50 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			_ = c.Close()
			stop()
			return nil
		}
	}
}
