package validator_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

const (
	fsmNS      = "fsm-system"
	meshConfig = fsmnames.MeshConfigName
)

// TestE2E runs every end-to-end case against one real apiserver that calls
// the validator over TLS through a ValidatingWebhookConfiguration built from
// validator.Rules().
func TestE2E(t *testing.T) {
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs(), filepath.Join("testdata", "crds")},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client

	url := serveValidator(ctx, t, validator.Options{
		Reader:                c,
		MeshName:              "fsm",
		FSMNamespace:          fsmNS,
		MeshConfigName:        meshConfig,
		ValidateTrafficTarget: true,
		Logger:                testr.New(t),
	})
	for _, ns := range []string{fsmNS, "apps", "v1alpha1", "v1alpha2", "v1alpha3"} {
		mustCreate(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	}
	// Stored before the webhook exists, as a copy left over from FSM would be.
	stray := presetMeshConfig(t)
	stray.SetName("fsm-mesh-config-backup")
	stray.SetFinalizers([]string{"example.com/keep"})
	mustCreate(ctx, t, c, stray)

	register(ctx, t, c, url)

	t.Run("preset accepted", func(t *testing.T) {
		obj := presetMeshConfig(t)
		if err := c.Create(ctx, obj); err != nil {
			t.Fatalf("creating the FSM preset MeshConfig: %v", err)
		}
		// The validator's own embedded base must be the same valid object.
		base, err := validator.BaseMeshConfig("apps", "base")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, base, client.DryRunAll); err != nil {
			t.Fatalf("dry-run create of BaseMeshConfig: %v", err)
		}
	})

	t.Run("bad create refused in every version", func(t *testing.T) {
		for _, v := range []string{"v1alpha1", "v1alpha2", "v1alpha3"} {
			obj := presetMeshConfig(t)
			obj.SetAPIVersion("config.flomesh.io/" + v)
			obj.SetNamespace(v)
			setField(t, obj, []any{"10.0.0.0/8", "10.0.0.0"}, "spec", "traffic", "outboundIPRangeExclusionList")
			setField(t, obj, "warning-ish", "spec", "sidecar", "logLevel")
			err := c.Create(ctx, obj)
			wantDenied(t, err,
				`spec.traffic.outboundIPRangeExclusionList[1]: Invalid value: "10.0.0.0": must be a CIDR such as 10.0.0.0/8 or fd00::/8`,
				`spec.sidecar.logLevel: Unsupported value: "warning-ish"`)
			if !apierrors.IsInvalid(err) {
				t.Errorf("%s: want a 422 Invalid status, got %v", v, err)
			}
		}
	})

	// A quantity the CRD's pattern admits whose parsing takes about a
	// minute (each further exponent digit 20-40 times longer): refused
	// unparsed, naming it, instead of the apiserver giving up on the
	// webhook while its goroutine keeps the CPU pod admission shares.
	t.Run("costly quantity refused in every version", func(t *testing.T) {
		for _, v := range []string{"v1alpha1", "v1alpha2", "v1alpha3"} {
			obj := presetMeshConfig(t)
			obj.SetAPIVersion("config.flomesh.io/" + v)
			obj.SetNamespace(v)
			setField(t, obj, map[string]any{"cpu": "1e-99999999"}, "spec", "sidecar", "resources", "limits")
			err := c.Create(ctx, obj, client.DryRunAll)
			wantDenied(t, err, `spec.sidecar.resources.limits[cpu]: Invalid value: "1e-99999999": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`)
		}
	})

	t.Run("deprecated versions warn", func(t *testing.T) {
		wc, rec := warningClient(t, env.Config)
		obj := presetMeshConfig(t)
		obj.SetAPIVersion("config.flomesh.io/v1alpha2")
		obj.SetNamespace("v1alpha2")
		setField(t, obj, "pipy", "spec", "sidecar", "sidecarClass")
		if err := wc.Create(ctx, obj, client.DryRunAll); err != nil {
			t.Fatalf("v1alpha2 dry-run create: %v", err)
		}
		warnings := rec.all()
		joined := strings.Join(warnings, "\n")
		for _, w := range []string{
			"config.flomesh.io/v1alpha2 MeshConfig is deprecated; use config.flomesh.io/v1alpha3 MeshConfig",
			"spec.sidecar.sidecarClass is deprecated: config.flomesh.io/v1alpha3 has no such field",
		} {
			if !strings.Contains(joined, w) {
				t.Errorf("missing warning %q in %q", w, warnings)
			}
		}
	})

	// The mesh intercepts IPv4 only (the sidecar listens on 0.0.0.0): an
	// IPv6 inclusion is refused, an IPv6 exclusion admitted as a no-op.
	t.Run("IPv6 inclusion refused, IPv6 exclusion warns", func(t *testing.T) {
		wc, rec := warningClient(t, env.Config)
		obj := presetMeshConfig(t)
		obj.SetNamespace("v1alpha3")
		setField(t, obj, []any{"10.96.0.0/12", "fd00::/8"}, "spec", "traffic", "outboundIPRangeInclusionList")
		err := wc.Create(ctx, obj, client.DryRunAll)
		wantDenied(t, err, `spec.traffic.outboundIPRangeInclusionList[1]: Invalid value: "fd00::/8": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`)

		obj = presetMeshConfig(t)
		obj.SetNamespace("v1alpha3")
		setField(t, obj, []any{"10.96.0.0/12", "fd00::/8"}, "spec", "traffic", "outboundIPRangeExclusionList")
		if err := wc.Create(ctx, obj, client.DryRunAll); err != nil {
			t.Fatalf("IPv6 exclusion: %v", err)
		}
		warnings := rec.all()
		want := `spec.traffic.outboundIPRangeExclusionList[1]: "fd00::/8" changes nothing: the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic is never intercepted and already bypasses it`
		if !slices.Contains(warnings, want) {
			t.Errorf("warnings %q lack %q", warnings, want)
		}
	})

	t.Run("demo object refused with every error and probe passes", func(t *testing.T) {
		obj, err := validator.DemoInvalidMeshConfig("apps", "demo")
		if err != nil {
			t.Fatal(err)
		}
		err = c.Create(ctx, obj)
		wantDenied(t, err,
			demoCIDRDenial,
			`spec.sidecar.logLevel: Unsupported value: "verbose"`,
			`spec.sidecar.sidecarImage: Invalid value: "Flomesh/Pipy:1.5.14"`,
			`spec.sidecar.configResyncInterval: Invalid value: "5 minutes"`,
			`spec.observability.tracing.sampledFraction: Invalid value: "1.5"`)
		if !validator.IsWebhookDenial(err) {
			t.Errorf("IsWebhookDenial(%v) = false", err)
		}
		if err := validator.Probe(ctx, c, fsmNS, meshConfig); err != nil {
			t.Errorf("Probe: %v", err)
		}
	})

	t.Run("second MeshConfig in the mesh namespace refused", func(t *testing.T) {
		obj := presetMeshConfig(t)
		obj.SetName("another-config")
		wantDenied(t, c.Create(ctx, obj),
			`metadata.name: Invalid value: "another-config": the mesh in namespace fsm-system reads only the MeshConfig named "fsm-mesh-config"`)
	})

	t.Run("stray MeshConfig in the mesh namespace stays editable", func(t *testing.T) {
		obj := stray.DeepCopy()
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		bad := obj.DeepCopy()
		setField(t, bad, "loud", "spec", "sidecar", "logLevel")
		wantDenied(t, c.Update(ctx, bad), `spec.sidecar.logLevel: Unsupported value: "loud"`)
		obj.SetFinalizers(nil)
		wantWarned(ctx, t, env.Config, obj,
			`metadata.name: Invalid value: "fsm-mesh-config-backup": the mesh in namespace fsm-system reads only the MeshConfig named "fsm-mesh-config"; one MeshConfig per mesh namespace (already stored: allowed unchanged, please fix)`)
		if err := c.Update(ctx, obj); err != nil {
			t.Fatalf("removing the finalizer of the stray MeshConfig: %v", err)
		}
		if err := c.Delete(ctx, obj); err != nil {
			t.Errorf("deleting the stray MeshConfig: %v", err)
		}
	})

	t.Run("update breaking a field refused, valid update accepted", func(t *testing.T) {
		obj := &unstructured.Unstructured{}
		obj.SetGroupVersionKind(presetMeshConfig(t).GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Namespace: fsmNS, Name: meshConfig}, obj); err != nil {
			t.Fatal(err)
		}
		bad := obj.DeepCopy()
		setField(t, bad, int64(1024), "spec", "certificate", "certKeyBitSize") // schema: min 2048
		setField(t, bad, "forever", "spec", "certificate", "serviceCertValidityDuration")
		err := c.Update(ctx, bad)
		if err == nil {
			t.Fatal("update with a bad key size and duration was accepted")
		}
		bad = obj.DeepCopy()
		setField(t, bad, "forever", "spec", "certificate", "serviceCertValidityDuration")
		wantDenied(t, c.Update(ctx, bad),
			`spec.certificate.serviceCertValidityDuration: Invalid value: "forever": must be a duration such as 90s, 1m30s or 24h`)
		good := obj.DeepCopy()
		setField(t, good, "48h", "spec", "certificate", "serviceCertValidityDuration")
		if err := c.Update(ctx, good); err != nil {
			t.Fatalf("valid update: %v", err)
		}
	})

	t.Run("dry run", func(t *testing.T) {
		obj := presetMeshConfig(t)
		obj.SetNamespace("apps")
		obj.SetName("dry")
		if err := c.Create(ctx, obj, client.DryRunAll); err != nil {
			t.Fatalf("dry-run create: %v", err)
		}
		got := obj.DeepCopy()
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); !apierrors.IsNotFound(err) {
			t.Errorf("dry-run object stored: %v", err)
		}
		setField(t, obj, "1.5", "spec", "observability", "tracing", "sampledFraction")
		wantDenied(t, c.Create(ctx, obj, client.DryRunAll),
			`spec.observability.tracing.sampledFraction: Invalid value: "1.5": must be a number between 0 and 1`)
	})

	t.Run("policy kinds", func(t *testing.T) {
		policyCases(ctx, t, c, env.Config)
	})

	// The strict validator serves until the end of TestE2E: the later cases
	// run against it.
	strictURL := serveValidator(ctx, t, validator.Options{
		Reader: c, MeshName: "fsm", FSMNamespace: fsmNS, MeshConfigName: meshConfig,
		ValidateTrafficTarget: true, StrictPolicyValidation: true, Logger: testr.New(t),
	})
	t.Run("policy kinds, strict", func(t *testing.T) {
		reroute(ctx, t, c, strictURL)
		strictPolicyCases(ctx, t, c, env.Config)
	})

	// From here on the configuration is the servers' own (Webhooks): the
	// apiserver sends what FSM validated, plus the mesh's MeshConfig.
	t.Run("registration: FSM's namespaces for policies, the fsm namespace for MeshConfig", func(t *testing.T) {
		registrationCases(ctx, t, c, strictURL)
	})

	t.Run("delete of the mesh MeshConfig", func(t *testing.T) {
		other := presetMeshConfig(t)
		other.SetNamespace("apps")
		mustCreate(ctx, t, c, other)
		if err := c.Delete(ctx, other); err != nil {
			t.Errorf("deleting a MeshConfig outside the mesh namespace: %v", err)
		}

		mesh := presetMeshConfig(t)
		wantDeniedBy(t, validator.MeshConfigWebhookName, c.Delete(ctx, mesh),
			`MeshConfig fsm-system/fsm-mesh-config is the configuration of mesh "fsm" and cannot be deleted while the mesh is installed; to remove the mesh, uninstall it`)

		// A namespace being deleted takes its MeshConfig with it: then the
		// delete is allowed (envtest has no namespace controller, so the
		// namespace stays Terminating and we delete the MeshConfig
		// ourselves, as the controller would).
		if err := c.Delete(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNS}}); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx, mesh); err != nil {
			t.Errorf("delete during namespace termination: %v", err)
		}
	})
}

func obj(apiVersion, kind, ns, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetNamespace(ns)
	u.SetName(name)
	return u
}

// demoCIDRDenial is one of DemoInvalidMeshConfig's denials.
const demoCIDRDenial = `spec.traffic.outboundIPRangeInclusionList[0]: Invalid value: "10.1.0.0/16": overlaps spec.traffic.outboundIPRangeExclusionList[0] ("10.0.0.0/8")`

const (
	pol  = "policy.flomesh.io/v1alpha1"
	plug = "plugin.flomesh.io/v1alpha1"
)

func backend(name string, port int64) map[string]any {
	return map[string]any{"name": name, "port": map[string]any{"number": port, "protocol": "http"}}
}

var (
	ipSource             = []any{map[string]any{"kind": "IPRange", "name": "10.0.0.0/8"}}
	httpsNoMTLSPrincipal = map[string]any{
		"backends": []any{map[string]any{"name": "web", "port": map[string]any{"number": int64(443), "protocol": "https"}, "tls": map[string]any{"skipClientCertValidation": false}}},
		"sources":  ipSource}
)

const notEnforced = "(warning only: FSM v1.5.1 did not enforce this; strict policy validation denies it)"

// policyCases run in the default mode: FSM's rules deny, the ones FSM never
// applied warn.
func policyCases(ctx context.Context, t *testing.T, c client.Client, cfg *rest.Config) {
	t.Run("IngressBackend conflicts read through the Reader", func(t *testing.T) {
		mustCreate(ctx, t, c, obj(pol, "IngressBackend", "apps", "first", map[string]any{"backends": []any{backend("web", 80)}, "sources": ipSource}))
		// FSM's conflict lookup never matched: a warning, on one line.
		wantWarned(ctx, t, cfg, obj(pol, "IngressBackend", "apps", "second", map[string]any{"backends": []any{backend("web", 80)}, "sources": ipSource}),
			"duplicate backends detected [+] IngressBackend apps/second conflicts with apps/first: Backend web specified in second and first conflicts "+notEnforced)
		// Same backend on another port is fine; updating "first" itself is fine.
		mustCreate(ctx, t, c, obj(pol, "IngressBackend", "apps", "third", map[string]any{"backends": []any{backend("web", 81)}, "sources": ipSource}))
		wantDenied(t, c.Create(ctx, obj(pol, "IngressBackend", "apps", "bad", map[string]any{
			"backends": []any{map[string]any{"name": "x", "port": map[string]any{"number": int64(1), "protocol": "udp"}}},
			"sources":  []any{map[string]any{"kind": "Service", "name": "s"}}})),
			"Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: udp",
			"'source.namespace' not specified for source kind Service")
	})

	t.Run("AccessControl, a kind FSM never routes", func(t *testing.T) {
		wantWarned(ctx, t, cfg, obj(pol, "AccessControl", "apps", "acl", httpsNoMTLSPrincipal),
			"HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source "+notEnforced)
		mustCreate(ctx, t, c, obj(pol, "AccessControl", "apps", "acl", httpsNoMTLSPrincipal)) // stored for the strict cases
	})

	t.Run("Egress", func(t *testing.T) {
		wantDenied(t, c.Create(ctx, obj(pol, "Egress", "apps", "eg", map[string]any{
			"matches": []any{map[string]any{"kind": "HTTPRouteGroup", "name": "r"}}})),
			"Expected 'matches.apiGroup' to be one of [specs.smi-spec.io/v1alpha4 policy.flomesh.io/v1alpha1], got: <unset>")
	})

	t.Run("UpstreamTrafficSetting, a kind FSM never routes", func(t *testing.T) {
		mustCreate(ctx, t, c, obj(pol, "UpstreamTrafficSetting", "apps", "u1", map[string]any{"host": "web.apps.svc.cluster.local"}))
		wantWarned(ctx, t, cfg, obj(pol, "UpstreamTrafficSetting", "apps", "u2", map[string]any{"host": "web.apps.svc.cluster.local"}),
			"UpstreamTrafficSetting apps/u2 conflicts with apps/u1 since they have the same host web.apps.svc.cluster.local "+notEnforced)
		mustCreate(ctx, t, c, obj(pol, "UpstreamTrafficSetting", "v1alpha1", "u2", map[string]any{"host": "web.apps.svc.cluster.local"}))
		wantWarned(ctx, t, cfg, obj(pol, "UpstreamTrafficSetting", "apps", "u3", map[string]any{"host": "web"}),
			`spec.host: Invalid value: "web": invalid FQDN specified as host `+notEnforced)
	})

	t.Run("EgressGateway global defined once in the cluster", func(t *testing.T) {
		global := map[string]any{"global": []any{map[string]any{"service": "fsm-egress-gateway", "namespace": fsmNS}}}
		mustCreate(ctx, t, c, obj(pol, "EgressGateway", "apps", "gw", global))
		wantDenied(t, c.Create(ctx, obj(pol, "EgressGateway", "v1alpha2", "gw2", global)),
			"Redefinition of global egress gateway policy and conflict with apps.gw")
	})

	t.Run("TrafficTarget namespace", func(t *testing.T) {
		wantDenied(t, c.Create(ctx, obj("access.smi-spec.io/v1alpha3", "TrafficTarget", "apps", "tt", map[string]any{
			"destination": map[string]any{"kind": "ServiceAccount", "name": "sa", "namespace": "other"}})),
			"The traffic target namespace (apps) must match spec.Destination.Namespace (other)")
	})

	t.Run("feature flags read from the MeshConfig", func(t *testing.T) {
		// Plugin is cluster-scoped (FSM's CRD): the rule must still reach it.
		wantDenied(t, c.Create(ctx, obj(plug, "Plugin", "", "p", map[string]any{"pipyscript": "pipy()"})), "FSM is prohibited to apply plugin policy")
		wantDenied(t, c.Create(ctx, obj(plug, "PluginChain", "apps", "pc", map[string]any{})), "FSM is prohibited to apply plugin policy")
		wantDenied(t, c.Create(ctx, obj(plug, "PluginConfig", "apps", "pcfg", map[string]any{})), "FSM is prohibited to apply plugin policy")
		wantWarned(ctx, t, cfg, obj(pol, "AccessCert", "apps", "ac", map[string]any{}),
			"FSM is prohibited to issue certificates for external services "+notEnforced)

		mc := presetMeshConfig(t)
		if err := c.Get(ctx, client.ObjectKeyFromObject(mc), mc); err != nil {
			t.Fatal(err)
		}
		setField(t, mc, true, "spec", "featureFlags", "enablePluginPolicy")
		setField(t, mc, true, "spec", "featureFlags", "enableAccessCertPolicy")
		if err := c.Update(ctx, mc); err != nil {
			t.Fatal(err)
		}
		wantDenied(t, c.Create(ctx, obj(plug, "Plugin", "", "p", map[string]any{"script": "pipy()"})), "plugin[p.] is missing pipy script")
		mustCreate(ctx, t, c, obj(plug, "Plugin", "", "p", map[string]any{"pipyscript": "pipy()"}))
		mustCreate(ctx, t, c, obj(pol, "AccessCert", "apps", "ac", map[string]any{}))
	})
}

// strictPolicyCases run with StrictPolicyValidation: what FSM never applied
// is denied with FSM's message; a problem already stored still only warns.
func strictPolicyCases(ctx context.Context, t *testing.T, c client.Client, cfg *rest.Config) {
	t.Run("what FSM never applied is denied", func(t *testing.T) {
		wantDenied(t, c.Create(ctx, obj(pol, "IngressBackend", "apps", "second", map[string]any{"backends": []any{backend("web", 80)}, "sources": ipSource})),
			"duplicate backends detected\n[+] IngressBackend apps/second conflicts with apps/first:\nBackend web specified in second and first conflicts")
		wantDenied(t, c.Create(ctx, obj(pol, "AccessControl", "apps", "acl2", httpsNoMTLSPrincipal)),
			"HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source")
		wantDenied(t, c.Create(ctx, obj(pol, "UpstreamTrafficSetting", "apps", "u3", map[string]any{"host": "web"})),
			`spec.host: Invalid value: "web": invalid FQDN specified as host`)
	})

	t.Run("update ratchets: stored problems warn, new ones deny", func(t *testing.T) {
		acl := &unstructured.Unstructured{}
		acl.SetAPIVersion(pol)
		acl.SetKind("AccessControl")
		if err := c.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "acl"}, acl); err != nil {
			t.Fatal(err)
		}
		acl.SetLabels(map[string]string{"edited": "yes"})
		wantWarned(ctx, t, cfg, acl,
			"HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source (already stored: allowed unchanged, please fix)")
		setField(t, acl, []any{map[string]any{"kind": "IPRange", "name": "10.0.0.0"}}, "spec", "sources")
		wantDenied(t, c.Update(ctx, acl), "Invalid 'source.name' value specified for IPRange. Expected CIDR notation 'a.b.c.d/x', got '10.0.0.0'")
	})
}

// wantWarned creates (or, when it has a resourceVersion, updates) o as a
// dry run and checks it is allowed with a warning equal to want.
func wantWarned(ctx context.Context, t *testing.T, cfg *rest.Config, o *unstructured.Unstructured, want string) {
	t.Helper()
	wc, rec := warningClient(t, cfg)
	o = o.DeepCopy()
	var err error
	if o.GetResourceVersion() != "" {
		err = wc.Update(ctx, o, client.DryRunAll)
	} else {
		err = wc.Create(ctx, o, client.DryRunAll)
	}
	if err != nil {
		t.Fatalf("%s %s: want allowed with warning %q, got %v", o.GetKind(), o.GetName(), want, err)
	}
	if warnings := rec.all(); !slices.Contains(warnings, want) {
		t.Errorf("%s %s: warnings %q lack %q", o.GetKind(), o.GetName(), warnings, want)
	}
}

// warningRecorder keeps every admission warning a client receives.
type warningRecorder struct {
	mu       sync.Mutex
	warnings []string
}

func (r *warningRecorder) HandleWarningHeader(_ int, _ string, msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.warnings = append(r.warnings, msg)
}

func (r *warningRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.warnings)
}

// warningClient is a client on cfg whose warnings the recorder keeps.
func warningClient(t *testing.T, cfg *rest.Config) (client.Client, *warningRecorder) {
	t.Helper()
	rec := &warningRecorder{}
	wcfg := rest.CopyConfig(cfg)
	wcfg.WarningHandler = rec
	wc, err := client.New(wcfg, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return wc, rec
}

func presetMeshConfig(t *testing.T) *unstructured.Unstructured {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: m}
}

func setField(t *testing.T, u *unstructured.Unstructured, v any, path ...string) {
	t.Helper()
	if err := unstructured.SetNestedField(u.Object, v, path...); err != nil {
		t.Fatal(err)
	}
}

func mustCreate(ctx context.Context, t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(ctx, obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, client.ObjectKeyFromObject(obj), err)
	}
}

// testWebhookName is the entry register creates.
const testWebhookName = "validate.flomesh.io"

// wantDenied checks err is an admission denial by the entry register
// creates, containing every fragment.
func wantDenied(t *testing.T, err error, fragments ...string) {
	t.Helper()
	wantDeniedBy(t, testWebhookName, err, fragments...)
}

// wantFSMDenialStatus checks the client got a policy denial as FSM v1.5.1's
// users get one: 400 with no reason (kubectl: "Error from server: ..."),
// not 403 Forbidden.
func wantFSMDenialStatus(t *testing.T, err error) {
	t.Helper()
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		t.Fatalf("%v: not an API status", err)
	}
	if s := st.Status(); s.Code != http.StatusBadRequest || s.Reason != "" {
		t.Errorf("denial reached the client as %d %q, want FSM's 400 without a reason: %v", s.Code, s.Reason, err)
	}
}

// wantDeniedBy checks err is an admission denial by webhook containing
// every fragment.
func wantDeniedBy(t *testing.T, webhook string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted; want denial by %s containing %q", webhook, fragments)
	}
	msg := err.Error()
	if !strings.Contains(msg, `admission webhook "`+webhook+`" denied the request`) {
		t.Errorf("not denied by %s: %v", webhook, err)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("denial lacks %q:\n%s", f, msg)
		}
	}
}

// serveValidator runs controller-runtime's webhook server with the handler at
// /validate on a loopback port with a fresh self-signed serving cert; it
// returns the URL and leaves the CA in caPEM.
func serveValidator(ctx context.Context, t *testing.T, o validator.Options) string {
	t.Helper()
	dir := t.TempDir()
	ca, err := writeServingCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	caPEM = ca
	port := freeport.Must(t)
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: port, CertDir: dir})
	srv.Register(fsmnames.ValidatorPath, reviewhttp.NewAdmission(validator.NewHandler(o)))
	ctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- srv.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("webhook server: %v", err)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			_ = conn.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook server did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Sprintf("https://127.0.0.1:%d/validate", port)
}

var caPEM []byte

func register(ctx context.Context, t *testing.T, c client.Client, url string) {
	t.Helper()
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(20)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: fsmnames.ValidatingConfigurationName("fsm")},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    testWebhookName,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules:                   validator.Rules(),
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	mustCreate(ctx, t, c, cfg)
	// The apiserver picks up new webhook configurations asynchronously:
	// wait until a MeshConfig that only the webhook refuses is refused.
	deadline := time.Now().Add(30 * time.Second)
	for {
		obj, err := validator.DemoInvalidMeshConfig("default", "readiness")
		if err != nil {
			t.Fatal(err)
		}
		err = c.Create(ctx, obj, client.DryRunAll)
		if validator.IsWebhookDenial(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("webhook not active after 30s: last result %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// registrationCases replace the test's catch-all entry with the servers'
// own entries (validator.Registration)
// calling url, and check through the apiserver which requests reach the
// validator: a policy breaking a rule FSM enforced is denied where FSM
// validated and admitted where it did not; the MeshConfig webhook covers the
// fsm namespace only.
func registrationCases(ctx context.Context, t *testing.T, c client.Client, validateURL string) {
	for name, labels := range map[string]map[string]string{
		"monitored":     {fsmnames.MonitoredByLabel: "fsm"},
		"unmonitored":   nil,
		"ignored":       {fsmnames.MonitoredByLabel: "fsm", fsmnames.IgnoreLabel: "true"},
		"control-plane": {fsmnames.MonitoredByLabel: "fsm", fsmnames.ControlPlaneLabel: "fsm"},
	} {
		mustCreate(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}})
	}
	// Monitored or not, the fsm namespace is never the policy webhook's.
	var fsm corev1.Namespace
	if err := c.Get(ctx, client.ObjectKey{Name: fsmNS}, &fsm); err != nil {
		t.Fatal(err)
	}
	fsm.Labels[fsmnames.MonitoredByLabel] = "fsm"
	if err := c.Update(ctx, &fsm); err != nil {
		t.Fatal(err)
	}

	u, err := neturl.Parse(validateURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	reg := validator.Registration("fsm", fsmNS)
	want := webhooks.NewValidating(reg.Validating, webhooks.Endpoint{URLHost: u.Hostname(), Port: port}, reg.Path, caPEM)
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: reg.Name}, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks = want.Webhooks
	if err := c.Update(ctx, &cfg); err != nil {
		t.Fatal(err)
	}

	// FSM enforced this TrafficTarget rule.
	badTarget := func(ns string) *unstructured.Unstructured {
		return obj("access.smi-spec.io/v1alpha3", "TrafficTarget", ns, "tt", map[string]any{
			"destination": map[string]any{"kind": "ServiceAccount", "name": "sa", "namespace": "other"}})
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Create(ctx, badTarget("unmonitored"), client.DryRunAll)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the servers' registration not active after 30s: last result %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	err = c.Create(ctx, badTarget("monitored"), client.DryRunAll)
	wantDeniedBy(t, validator.PolicyWebhookName, err,
		"The traffic target namespace (monitored) must match spec.Destination.Namespace (other)")
	wantFSMDenialStatus(t, err)
	for _, ns := range []string{"unmonitored", "ignored", "control-plane", fsmNS} {
		if err := c.Create(ctx, badTarget(ns), client.DryRunAll); err != nil {
			t.Errorf("TrafficTarget in namespace %s, which FSM never validated: %v", ns, err)
		}
	}
	// A namespaceSelector never skips a cluster-scoped object.
	err = c.Create(ctx, obj(plug, "Plugin", "", "p2", map[string]any{}), client.DryRunAll)
	wantDeniedBy(t, validator.PolicyWebhookName, err, "plugin[p2.] is missing pipy script")
	wantFSMDenialStatus(t, err)

	bad, err := validator.DemoInvalidMeshConfig(fsmNS, meshConfig)
	if err != nil {
		t.Fatal(err)
	}
	wantDeniedBy(t, validator.MeshConfigWebhookName, c.Create(ctx, bad, client.DryRunAll), demoCIDRDenial)
	if err := validator.Probe(ctx, c, fsmNS, meshConfig); err != nil {
		t.Errorf("readiness probe under the servers' registration: %v", err)
	}
	// No component of this mesh reads a MeshConfig outside its namespace.
	for _, ns := range []string{"monitored", "unmonitored"} {
		elsewhere, err := validator.DemoInvalidMeshConfig(ns, "elsewhere")
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Create(ctx, elsewhere, client.DryRunAll); err != nil {
			t.Errorf("MeshConfig in namespace %s: %v", ns, err)
		}
	}
}

// reroute points the registered configuration at url (served with the CA
// now in caPEM) and waits until an UpstreamTrafficSetting that only the
// strict validator denies is denied.
func reroute(ctx context.Context, t *testing.T, c client.Client, url string) {
	t.Helper()
	var cfg admissionregistrationv1.ValidatingWebhookConfiguration
	if err := c.Get(ctx, client.ObjectKey{Name: fsmnames.ValidatingConfigurationName("fsm")}, &cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	if err := c.Update(ctx, &cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := c.Create(ctx, obj(pol, "UpstreamTrafficSetting", "apps", "probe", map[string]any{"host": "probe"}), client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "invalid FQDN specified as host") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("strict validator not active after 30s: last result %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeServingCert(dir string) ([]byte, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "validator-test-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	write := func(name, typ string, der []byte) error {
		return os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
	}
	if err := write("tls.crt", "CERTIFICATE", leafDER); err != nil {
		return nil, err
	}
	if err := write("tls.key", "PRIVATE KEY", keyDER); err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), nil
}
