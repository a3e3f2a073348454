package injector_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// testValidatedMeshConfigInjects reproduces the report "accepted by the
// validator, then every pod create denied by the injector" through the real
// apiserver, with the validator webhook in front of fsm-mesh-config: patching
// outboundIPRangeExclusionList [fd00::/8] and certKeyBitSize 2560 is
// admitted, and pods are still injected: the IPv6 range is a no-op (the mesh
// never intercepts IPv6, so the fsm-init script is FSM's IPv4 rule set and
// nothing else) and the bootstrap key is what the shipped choice makes of
// certKeyBitSize 2560 (ECDSA P-256 by default; RSA-2560 under
// BootstrapKeyFromMeshConfig, table-tested in mutate_test.go). An IPv6 inclusion is
// refused, in the MeshConfig by the validator and in a pod annotation by
// the injector, with the reason.
func (e *e2e) testValidatedMeshConfigInjects(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	mc := presetMeshConfig(t)
	// Cleanups run last in, first out: the validator (which refuses to
	// delete the mesh's MeshConfig) goes first, then the MeshConfig.
	t.Cleanup(func() { e.deleteMeshConfig(t, mc) })
	e.serveValidator(t, ctx, servingCA)
	ns := e.namespace(t, ctx, "validated", true)
	if err := e.cl.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	patch := func(p string) error {
		return e.cl.Patch(ctx, &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: mc.Namespace, Name: mc.Name}},
			client.RawPatch(types.MergePatchType, []byte(p)))
	}

	// What injection cannot carry is still refused, with the field and why.
	err := patch(`{"spec":{"traffic":{"outboundIPRangeExclusionList":["fd00::/129"],"outboundIPRangeInclusionList":["10.96.0.0/12","fd00::/8"],` +
		`"networkInterfaceExclusionList":["eth0 -j ACCEPT"]}}}`)
	if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), `admission webhook "fsm-validator.k8s.io" denied the request`) {
		t.Fatalf("bad ranges and interface: got %v, want a denial by the validator", err)
	}
	for _, want := range []string{
		`spec.traffic.outboundIPRangeExclusionList[0]: Invalid value: "fd00::/129": must be a CIDR such as 10.0.0.0/8 or fd00::/8`,
		`spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: "fd00::/8": ` + noV6Reason,
		`spec.traffic.networkInterfaceExclusionList[0]: Invalid value: "eth0 -j ACCEPT": must be a Linux network interface name`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("denial %q lacks %q", err, want)
		}
	}

	// The report's first value: an IPv6 exclusion, beside an IPv4 one that
	// shows when the injector's cache has the patched MeshConfig.
	if err := patch(`{"spec":{"traffic":{"outboundIPRangeExclusionList":["` + v4Excluded + `","fd00::/8"]}}}`); err != nil {
		t.Fatalf("kubectl patch outboundIPRangeExclusionList [%s fd00::/8]: %v", v4Excluded, err)
	}
	i := 0
	var script string
	eventually(t, settleWithin, "a pod injected with the patched exclusions", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("v6-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, fmt.Errorf("pod create after the patch: %w", err)
		}
		script = initScript(p)
		return strings.Contains(script, "-A FSM_PROXY_OUTBOUND -d "+v4Excluded+" -j RETURN\n"), nil
	})
	if !strings.HasPrefix(script, "iptables-restore --noflush <<EOF\n*nat\n") || strings.Count(script, "<<EOF") != 1 ||
		strings.Contains(script, "ip6tables") || strings.Contains(script, "fd00") {
		t.Errorf("fsm-init script is not FSM's IPv4 rule set alone:\n%s", script)
	}

	// An IPv6 inclusion in a pod annotation is denied by the injector.
	p := pod("v6-inclusion", ns)
	p.Annotations = map[string]string{injector.OutboundIPRangeInclusionAnnotation: "10.96.0.0/12,fd00::/8"}
	err = e.cl.Create(ctx, p, client.DryRunAll)
	if want := "Invalid IP range 'fd00::/8' specified for annotation 'flomesh.io/outbound-ip-range-inclusion-list': " + noV6Reason; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("pod with an IPv6 inclusion annotation: %v, want a denial containing %q", err, want)
	}

	// The report's second value: a key size between the common ones.
	if err := patch(`{"spec":{"certificate":{"certKeyBitSize":2560}}}`); err != nil {
		t.Fatalf("kubectl patch certKeyBitSize 2560: %v", err)
	}
	want, err := injector.BootstrapKeyAlgorithm("", 2560)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "a pod injected after the patch, its bootstrap key "+string(want), func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("key-%d", i), ns)
		if err := e.cl.Create(ctx, p); err != nil {
			return false, fmt.Errorf("pod create after the patch: %w", err)
		}
		s := &corev1.Secret{}
		if err := e.cl.Get(ctx, client.ObjectKey{Namespace: ns, Name: injector.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])}, s); err != nil {
			return false, err
		}
		leaf, err := certs.ParseCertsPEM(s.Data[injector.RepoCertKey])
		if err != nil {
			return false, err
		}
		key, err := certs.ParseKeyPEM(s.Data[injector.RepoKeyKey])
		if err != nil {
			return false, err
		}
		if !certs.KeyMatches(key, leaf[0].PublicKey) {
			return false, fmt.Errorf("bootstrap key does not match its certificate")
		}
		got, err := certs.AlgorithmOf(leaf[0].PublicKey)
		return err == nil && got == want, err
	})

	// localProxyMode PodIP: fsm-init reads status.podIPs too, which the
	// apiserver takes, to DNAT to the pod's IPv4 address when status.podIP
	// is IPv6 (iptables.TestScriptPodIPDNATIsIPv4).
	if err := patch(`{"spec":{"sidecar":{"localProxyMode":"PodIP"}}}`); err != nil {
		t.Fatalf("kubectl patch localProxyMode PodIP: %v", err)
	}
	eventually(t, settleWithin, "a pod injected with localProxyMode PodIP", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("podip-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, fmt.Errorf("pod create with localProxyMode PodIP: %w", err)
		}
		if !strings.Contains(initScript(p), "-j DNAT --to-destination $POD_IP") {
			return false, nil
		}
		for _, c := range p.Spec.InitContainers {
			if c.Name != injector.InitContainerName {
				continue
			}
			for _, env := range c.Env {
				if env.Name == "POD_IPS" && env.ValueFrom != nil && env.ValueFrom.FieldRef != nil && env.ValueFrom.FieldRef.FieldPath == "status.podIPs" {
					return true, nil
				}
			}
			return false, fmt.Errorf("fsm-init env %+v lacks POD_IPS from status.podIPs", c.Env)
		}
		return false, fmt.Errorf("no %s", injector.InitContainerName)
	})
}

func initScript(p *corev1.Pod) string {
	for _, c := range p.Spec.InitContainers {
		if c.Name == injector.InitContainerName && len(c.Args) > 0 {
			return c.Args[len(c.Args)-1]
		}
	}
	return ""
}

// serveValidator runs the validator webhook (as serve does) on its own
// loopback listener and registers it for the mesh's resources until the
// test ends.
func (e *e2e) serveValidator(t *testing.T, ctx context.Context, servingCA *certstest.CA) {
	t.Helper()
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.ValidatorPath, reviewhttp.NewAdmission(validator.NewHandler(validator.Options{
		Reader: e.cl, MeshName: meshName, FSMNamespace: fsmNamespace, MeshConfigName: fsmnames.MeshConfigName, Logger: testr.New(t),
	})))
	createForTest(ctx, t, e.cl, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-validator-mesh-" + meshName},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "fsm-validator.k8s.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: bundle},
			Rules:                   validator.Rules(),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			TimeoutSeconds:          ptr.To(int32(20)),
			AdmissionReviewVersions: []string{"v1"},
		}},
	})
	eventually(t, 30*time.Second, "the validator webhook to be called", func() (bool, error) {
		obj, err := validator.DemoInvalidMeshConfig("default", "readiness")
		if err != nil {
			return false, err
		}
		return validator.IsWebhookDenial(e.cl.Create(ctx, obj, client.DryRunAll)), nil
	})
}

// deleteMeshConfig removes mc once the validator's configuration is gone
// (the apiserver may still call it for a moment) and waits until pods are
// injected without it again, so later subtests see the defaults.
func (e *e2e) deleteMeshConfig(t *testing.T, mc *configv1alpha3.MeshConfig) {
	ctx := context.Background()
	eventually(t, settleWithin, "the MeshConfig to be deleted", func() (bool, error) {
		return client.IgnoreNotFound(e.cl.Delete(ctx, mc)) == nil, nil
	})
	ns := e.namespace(t, ctx, "validated-after", true)
	i := 0
	eventually(t, settleWithin, "pods injected without the MeshConfig", func() (bool, error) {
		i++
		p := pod(fmt.Sprintf("after-%d", i), ns)
		if err := e.cl.Create(ctx, p, client.DryRunAll); err != nil {
			return false, err
		}
		return !strings.Contains(initScript(p), v4Excluded), nil
	})
}

// v4Excluded is the IPv4 exclusion testValidatedMeshConfigInjects patches
// in: pods injected with it saw the patched MeshConfig.
const v4Excluded = "10.9.0.0/16"

// noV6Reason is why an IPv6 range cannot be intercepted (rules.IPv6NotIntercepted).
const noV6Reason = "the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted"
