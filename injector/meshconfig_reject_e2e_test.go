package injector_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
)

// testRejectedMeshConfig stores, with no validator in front of it (as while
// the validator is down), a MeshConfig the injector cannot apply: pods are
// still created and injected with the last valid MeshConfig, the
// MeshConfig carries a Warning Event naming the fields and values, and
// fsm_webhooks_injector_meshconfig_rejected names the fields until a valid
// MeshConfig is stored again.
func (e *e2e) testRejectedMeshConfig(t *testing.T) {
	ctx := context.Background()
	ns := e.namespace(t, ctx, "rejected", true)
	const lastValid, rejected, fixed = "10.7.0.0/16", "10.6.0.0/16", "10.5.0.0/16"
	mc := presetMeshConfig(t)
	mc.Spec.Traffic.OutboundIPRangeExclusionList = []string{lastValid}
	if err := e.cl.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.cl.Delete(ctx, mc); err != nil {
			t.Errorf("deleting the MeshConfig: %v", err)
		}
		e.waitExclusion(t, ns, "", fixed) // later subtests see the defaults
	})
	e.waitExclusion(t, ns, lastValid, "")

	// The CRD's schema (FSM's) stores them all; the injector can apply none.
	// The sidecar image (a YAML slip's trailing space) and the repo port go
	// into every pod: taken, every meshed pod would be refused by the
	// apiserver (or get a sidecar on port 70000), each leaving a Secret.
	patch := fmt.Sprintf(`{"spec":{"sidecar":{"logLevel":"verbose","sidecarImage":"flomesh/pipy:1.5.12 "},"repoServer":{"port":70000},`+
		`"traffic":{"outboundIPRangeExclusionList":[%q],"outboundIPRangeInclusionList":["fd00::/8"]}}}`, rejected)
	if err := e.cl.Patch(ctx, mc, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("storing the MeshConfig the injector cannot apply: %v", err)
	}
	eventually(t, settleWithin, "a Warning Event on the MeshConfig", func() (bool, error) {
		l := &eventsv1.EventList{}
		if err := e.cl.List(ctx, l, client.InNamespace(fsmNamespace)); err != nil {
			return false, err
		}
		for _, ev := range l.Items {
			if ev.Regarding.Kind == "MeshConfig" && ev.Regarding.Name == fsmnames.MeshConfigName && ev.Regarding.UID == mc.UID &&
				ev.Type == corev1.EventTypeWarning && ev.Reason == injector.EventMeshConfigRejected {
				for _, want := range []string{
					"cannot apply resourceVersion " + mc.ResourceVersion,
					"injects pods with the last valid MeshConfig (resourceVersion ",
					`spec.sidecar.logLevel: Unsupported value: "verbose"`,
					`spec.sidecar.sidecarImage: Invalid value: "flomesh/pipy:1.5.12 "`,
					`spec.repoServer.port: Invalid value: 70000`,
					`spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "fd00::/8"`,
				} {
					if !strings.Contains(ev.Note, want) {
						return false, fmt.Errorf("event note %q lacks %q", ev.Note, want)
					}
				}
				return true, nil
			}
		}
		return false, nil
	})
	if got, want := rejectedFieldsMetric(t), "spec.repoServer.port,spec.sidecar.logLevel,spec.sidecar.sidecarImage,spec.traffic.outboundIPRangeInclusionList"; got != want {
		t.Errorf("fsm_webhooks_injector_meshconfig_rejected fields %q, want %q", got, want)
	}

	// Pod creation goes on, with the last valid settings: a real create (its
	// bootstrap Secret written), not a dry run.
	p := pod("after-rejection", ns)
	if err := e.cl.Create(ctx, p); err != nil {
		t.Fatalf("pod create with a rejected MeshConfig stored: %v", err)
	}
	script := initScript(p)
	if !strings.Contains(script, "-d "+lastValid+" -j RETURN\n") || strings.Contains(script, rejected) {
		t.Errorf("fsm-init script is not the last valid MeshConfig's (%s, not %s):\n%s", lastValid, rejected, script)
	}
	if args := strings.Join(p.Spec.Containers[0].Args, " "); p.Spec.Containers[0].Name != injector.SidecarContainerName ||
		strings.Contains(args, "verbose") || strings.Contains(args, "70000") || p.Spec.Containers[0].Image != injector.DefaultSidecarImage {
		t.Errorf("sidecar %s image %q args %q carry the rejected log level, port or image", p.Spec.Containers[0].Name, p.Spec.Containers[0].Image, args)
	}
	s := &corev1.Secret{}
	if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}, s); err != nil {
		t.Errorf("bootstrap Secret of the pod: %v", err)
	}

	// A valid MeshConfig applies again and clears the metric.
	fix := fmt.Sprintf(`{"spec":{"sidecar":{"logLevel":"error","sidecarImage":null},"repoServer":{"port":6060},`+
		`"traffic":{"outboundIPRangeExclusionList":[%q],"outboundIPRangeInclusionList":[]}}}`, fixed)
	if err := e.cl.Patch(ctx, mc, client.RawPatch(types.MergePatchType, []byte(fix))); err != nil {
		t.Fatal(err)
	}
	e.waitExclusion(t, ns, fixed, "")
	if got := rejectedFieldsMetric(t); got != "" {
		t.Errorf("fsm_webhooks_injector_meshconfig_rejected fields %q after the fix, want none", got)
	}
}

// waitExclusion creates dry-run pods in ns until one's fsm-init script
// excludes want ("" = none of the test's ranges) and not gone.
func (e *e2e) waitExclusion(t *testing.T, ns, want, gone string) {
	t.Helper()
	ctx := context.Background()
	i := 0
	eventually(t, settleWithin, "pods injected with exclusion "+want, func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("wait-%s-%d", strings.NewReplacer(".", "-", "/", "-").Replace(want+gone), i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		script := initScript(p)
		return (want == "" || strings.Contains(script, "-d "+want+" -j RETURN\n")) && (gone == "" || !strings.Contains(script, gone)), nil
	})
}

// rejectedFieldsMetric is the fields set in
// fsm_webhooks_injector_meshconfig_rejected, comma-separated.
func rejectedFieldsMetric(t *testing.T) string {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var fields []string
	for _, f := range families {
		if f.GetName() != "fsm_webhooks_injector_meshconfig_rejected" {
			continue
		}
		for _, m := range f.GetMetric() {
			if m.GetGauge().GetValue() == 1 {
				fields = append(fields, m.GetLabel()[0].GetValue())
			}
		}
	}
	return strings.Join(fields, ",")
}
