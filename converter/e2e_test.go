package converter_test

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/diff"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter/convertertest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

func e2eScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, v1alpha2.AddToScheme, v1alpha3.AddToScheme, apixv1.AddToScheme, corev1.AddToScheme} {
		if err := add(s); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// startConverter starts the apiserver with the generated CRD and serves the
// converter the way `fsm-webhooks serve` does (convertertest): the serving
// layer issues the cert, checks its own listener and writes the CRD's
// conversion stanza; the test never touches the CRD.
func startConverter(t testing.TB, log logr.Logger) (*testenv.Env, *convertertest.Converter) {
	t.Helper()
	// The client logs the apiserver's deprecation warnings for v1alpha1/2
	// through controller-runtime's global logger, which outlives a test.
	ctrllog.SetLogger(logr.Discard())
	scheme := e2eScheme(t)
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()},
		Client:            client.Options{Scheme: scheme},
	})
	return env, convertertest.Start(t, env, scheme, log)
}

func preset(t testing.TB, name string) *v1alpha3.MeshConfig {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(testenv.RepoRoot(), "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mc := &v1alpha3.MeshConfig{}
	if err := yaml.UnmarshalStrict(raw, mc); err != nil {
		t.Fatal(err)
	}
	mc.Name, mc.Namespace = name, "default"
	return mc
}

func oldObject(name string) *v1alpha1.MeshConfig {
	return &v1alpha1.MeshConfig{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: v1alpha1.MeshConfigSpec{
			ClusterSet: v1alpha1.ClusterSetSpec{Properties: []v1alpha1.ClusterPropertySpec{{Name: "env", Value: "e2e"}}},
			Sidecar: v1alpha1.SidecarSpec{
				LogLevel: "error", SidecarClass: "pipy", InitContainerImage: "flomesh/init:1",
				SidecarDrivers: []v1alpha1.SidecarDriverSpec{{SidecarName: "pipy", SidecarImage: "flomesh/pipy:1", ProxyServerPort: 6060}},
			},
			RepoServer: v1alpha1.RepoServerSpec{IPAddr: "127.0.0.1", Codebase: "/repo"},
			Traffic: v1alpha1.TrafficSpec{
				InterceptionMode: "PodLevel", EnableEgress: true, OutboundIPRangeExclusionList: []string{"10.0.0.0/8"},
				OutboundPortExclusionList: []int32{6379}, InboundPortExclusionList: []int32{},
				EnablePermissiveTrafficPolicyMode: true, ServiceAccessMode: "mixed", HTTP2PerRequestLoadBalancing: true,
			},
			Observability: v1alpha1.ObservabilitySpec{
				FSMLogLevel: "info",
				Tracing:     v1alpha1.TracingSpec{Enable: true, Port: 9411, Address: "jaeger", SampledFraction: ptr.To(0.25)},
			},
			Certificate: v1alpha1.CertificateSpec{ServiceCertValidityDuration: "24h", CertKeyBitSize: 2048},
			PluginChains: v1alpha1.PluginChainsSpec{
				InboundTCPChains: []v1alpha1.PluginChainSpec{{Plugin: "tcp", Priority: 1}}, InboundHTTPChains: []v1alpha1.PluginChainSpec{},
				OutboundTCPChains: []v1alpha1.PluginChainSpec{}, OutboundHTTPChains: []v1alpha1.PluginChainSpec{},
			},
		},
	}
}

// TestConversionThroughAPIServer runs all end-to-end cases against one
// apiserver whose CRD points at the converter.
func TestConversionThroughAPIServer(t *testing.T) {
	env, conv := startConverter(t, testr.New(t))
	c := env.Client
	ctx := context.Background()

	t.Run("the server wrote the stanza once: URL, v1 reviews, the mesh CA", func(t *testing.T) {
		crd := &apixv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: fsmnames.MeshConfigCRDName}, crd); err != nil {
			t.Fatal(err)
		}
		wh := crd.Spec.Conversion.Webhook
		if crd.Spec.Conversion.Strategy != apixv1.WebhookConverter || wh == nil || wh.ClientConfig == nil || wh.ClientConfig.URL == nil {
			t.Fatalf("spec.conversion = %+v, want a Webhook by URL", crd.Spec.Conversion)
		}
		if u := *wh.ClientConfig.URL; !strings.HasPrefix(u, "https://127.0.0.1:") || !strings.HasSuffix(u, fsmnames.ConverterPath) {
			t.Errorf("url = %s, want https://127.0.0.1:<port>%s", u, fsmnames.ConverterPath)
		}
		if !slices.Equal(wh.ConversionReviewVersions, []string{"v1"}) {
			t.Errorf("conversionReviewVersions = %q, want [v1]", wh.ConversionReviewVersions)
		}
		root := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: conv.CA.Active().Raw})
		if !bytes.Contains(wh.ClientConfig.CABundle, root) {
			t.Errorf("caBundle does not hold the mesh CA's root:\n%s", wh.ClientConfig.CABundle)
		}
		// Nothing changes on later resyncs (1 s here): the server writes only
		// when the CRD differs from what it wants.
		rv := crd.ResourceVersion
		time.Sleep(3 * time.Second)
		if err := c.Get(ctx, client.ObjectKey{Name: fsmnames.MeshConfigCRDName}, crd); err != nil {
			t.Fatal(err)
		}
		if crd.ResourceVersion != rv {
			t.Errorf("the CRD was rewritten without a change (resourceVersion %s -> %s): %+v", rv, crd.ResourceVersion, crd.Spec.Conversion)
		}
	})

	t.Run("created as v1alpha1, read as v1alpha2 and v1alpha3, nothing lost", func(t *testing.T) {
		created := oldObject("from-v1alpha1")
		want := created.DeepCopy()
		if err := c.Create(ctx, created); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(created)

		v2 := &v1alpha2.MeshConfig{}
		if err := c.Get(ctx, key, v2); err != nil {
			t.Fatal(err)
		}
		if v2.Spec.Sidecar.SidecarClass != "pipy" || len(v2.Spec.Sidecar.SidecarDrivers) != 1 || v2.Spec.Sidecar.InitContainerImage != "flomesh/init:1" {
			t.Errorf("v1alpha2 lost the sidecar driver fields: %+v", v2.Spec.Sidecar)
		}
		if sf := v2.Spec.Observability.Tracing.SampledFraction; sf == nil || *sf != "0.25" {
			t.Errorf("v1alpha2 sampledFraction = %v, want \"0.25\"", sf)
		}
		if v2.Spec.Traffic.OutboundIPRangeInclusionList == nil || v2.Spec.Traffic.NetworkInterfaceExclusionList == nil {
			t.Errorf("v1alpha2 required lists missing: %+v", v2.Spec.Traffic)
		}

		v3 := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, key, v3); err != nil {
			t.Fatal(err)
		}
		if sf := v3.Spec.Observability.Tracing.SampledFraction; sf == nil || *sf != "0.25" {
			t.Errorf("v1alpha3 sampledFraction = %v, want \"0.25\"", sf)
		}
		if v3.Spec.Image.Registry != v1alpha3.DefaultImageRegistry || v3.Spec.Misc != v1alpha3.DefaultMisc() || v3.Spec.Connector.Notice != v1alpha3.DefaultConnectorNotice {
			t.Errorf("v1alpha3 required objects not filled: image=%+v misc=%+v connector=%+v", v3.Spec.Image, v3.Spec.Misc, v3.Spec.Connector)
		}
		if v3.Annotations[lossless.AnnotationV1Alpha2Fields] == "" {
			t.Errorf("v1alpha3 object lacks %s", lossless.AnnotationV1Alpha2Fields)
		}
		// The v1alpha3 view must itself be writable: the schema accepts it.
		v3.Spec.Sidecar.LogLevel = "warn"
		if err := c.Update(ctx, v3); err != nil {
			t.Fatalf("the converted v1alpha3 object is not valid v1alpha3: %v", err)
		}
		want.Spec.Sidecar.LogLevel = "warn"

		back := &v1alpha1.MeshConfig{}
		if err := c.Get(ctx, key, back); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(want.Spec, back.Spec) {
			t.Errorf("v1alpha1 → storage → v1alpha1 changed the spec:\nwant %+v\ngot  %+v", want.Spec, back.Spec)
		}
		if len(back.Annotations) != 0 {
			t.Errorf("v1alpha1 view carries annotations %v; nothing v1alpha1 cannot hold was added", back.Annotations)
		}
	})

	t.Run("update through v1alpha2 keeps the v1alpha3-only fields", func(t *testing.T) {
		orig := preset(t, "updated-via-v1alpha2")
		orig.Spec.Warmup.MinWeight = ptr.To[int64](0)
		orig.Spec.Sidecar.CompressConfig = ptr.To(false)
		orig.Spec.Misc.RepoServerImage = "flomesh/pipy-repo:custom"
		orig.Spec.Image.Name = map[string]string{"sidecar": "pipy-nightly"}
		orig.Spec.Observability.Tracing.SampledFraction = ptr.To("0.50")
		if err := c.Create(ctx, orig.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(orig)
		v2 := &v1alpha2.MeshConfig{}
		if err := c.Get(ctx, key, v2); err != nil {
			t.Fatal(err)
		}
		v2.Spec.Sidecar.LogLevel = "debug"
		v2.Spec.Traffic.EnableEgress = false
		if err := c.Update(ctx, v2); err != nil {
			t.Fatal(err)
		}

		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		want := orig.Spec.DeepCopy()
		want.Sidecar.LogLevel = "debug"
		want.Traffic.EnableEgress = false
		if !apiequality.Semantic.DeepEqual(*want, got.Spec) {
			t.Errorf("v1alpha3 spec after a v1alpha2 update:\nwant %+v\ngot  %+v", *want, got.Spec)
		}
		if _, ok := got.Annotations[lossless.AnnotationV1Alpha3Fields]; ok {
			t.Errorf("the stored object kept the down-conversion annotation: %v", got.Annotations)
		}

		// The same through v1alpha1: the number loses "0.50"'s text, the
		// annotation keeps it.
		v1 := &v1alpha1.MeshConfig{}
		if err := c.Get(ctx, key, v1); err != nil {
			t.Fatal(err)
		}
		if sf := v1.Spec.Observability.Tracing.SampledFraction; sf == nil || *sf != 0.5 {
			t.Errorf("v1alpha1 sampledFraction = %v, want 0.5", sf)
		}
		v1.Spec.Sidecar.LogLevel = "info"
		if err := c.Update(ctx, v1); err != nil {
			t.Fatal(err)
		}
		if err := c.Get(ctx, key, got); err != nil {
			t.Fatal(err)
		}
		want.Sidecar.LogLevel = "info"
		if !apiequality.Semantic.DeepEqual(*want, got.Spec) {
			t.Errorf("v1alpha3 spec after a v1alpha1 update:\nwant %+v\ngot  %+v", *want, got.Spec)
		}
	})

	t.Run("an unchanged write through an old version stores the v1alpha3 JSON it read", func(t *testing.T) {
		// FSM's preset without clusterSet (absent: the v1alpha1 types show
		// zero values), its explicit zeros (maxDataPlaneConnections: 0,
		// los: []), and quantities as a user writes them.
		p := preset(t, "exact-json")
		raw, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{}
		if err := obj.UnmarshalJSON(raw); err != nil {
			t.Fatal(err)
		}
		unstructured.RemoveNestedField(obj.Object, "spec", "clusterSet")
		for path, v := range map[string]any{
			"sidecar.maxDataPlaneConnections":    int64(0),
			"sidecar.localDNSProxy.wildcard.los": []any{},
			"sidecar.resources": map[string]any{
				"limits":   map[string]any{"cpu": "1000m", "memory": "1.5Gi"},
				"requests": map[string]any{"cpu": int64(2)},
			},
		} {
			if err := unstructured.SetNestedField(obj.Object, v, append([]string{"spec"}, strings.Split(path, ".")...)...); err != nil {
				t.Fatal(err)
			}
		}
		obj.SetGroupVersionKind(v1alpha3.GroupVersion.WithKind("MeshConfig"))
		if err := c.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(obj)
		get := func(version string) *unstructured.Unstructured {
			t.Helper()
			u := &unstructured.Unstructured{}
			u.SetAPIVersion(v1alpha3.GroupVersion.Group + "/" + version)
			u.SetKind("MeshConfig")
			if err := c.Get(ctx, key, u); err != nil {
				t.Fatal(err)
			}
			return u
		}
		stored := get("v1alpha3")
		if _, found, _ := unstructured.NestedFieldNoCopy(stored.Object, "spec", "clusterSet"); found {
			t.Fatal("setup: the apiserver stored a clusterSet")
		}
		if v, _, _ := unstructured.NestedFieldNoCopy(stored.Object, "spec", "sidecar", "resources", "limits", "cpu"); v != "1000m" {
			t.Fatalf("setup: the apiserver stored the cpu limit as %v", v)
		}
		for _, version := range []string{"v1alpha1", "v1alpha2"} {
			old := get(version)
			if err := c.Update(ctx, old); err != nil {
				t.Fatalf("unchanged %s write: %v", version, err)
			}
			after := get("v1alpha3")
			if !apiequality.Semantic.DeepEqual(stored.Object["spec"], after.Object["spec"]) {
				t.Errorf("an unchanged %s write changed the stored spec (-before +after):\n%s", version, diff.Diff(stored.Object["spec"], after.Object["spec"]))
			}
			if a := after.GetAnnotations(); len(a) != 0 {
				t.Errorf("after an unchanged %s write the stored object carries annotations %v", version, a)
			}
		}

		// An edit through v1alpha1 is stored as written, the rest as read.
		old := get("v1alpha1")
		if err := unstructured.SetNestedField(old.Object, "3", "spec", "sidecar", "resources", "limits", "cpu"); err != nil {
			t.Fatal(err)
		}
		if err := c.Update(ctx, old); err != nil {
			t.Fatal(err)
		}
		after := get("v1alpha3")
		if err := unstructured.SetNestedField(stored.Object, "3", "spec", "sidecar", "resources", "limits", "cpu"); err != nil {
			t.Fatal(err)
		}
		if !apiequality.Semantic.DeepEqual(stored.Object["spec"], after.Object["spec"]) {
			t.Errorf("a v1alpha1 edit of one quantity (-want +got):\n%s", diff.Diff(stored.Object["spec"], after.Object["spec"]))
		}
	})

	t.Run("a stale old-version annotation on a v1alpha3 object is ignored", func(t *testing.T) {
		// What a converter from before conversion.flomesh.io/v1alpha3-json
		// existed stores for a v1alpha1 write carrying one (read before a
		// rollback): a v1alpha3 object with the annotation passed through.
		const registry = "registry.example.com/mirror"
		orig := preset(t, "stale-exact-json")
		orig.Spec.Image.Registry = registry
		orig.Annotations = map[string]string{lossless.AnnotationV1Alpha3JSON: `[{"path":["spec","sidecar","maxDataPlaneConnections"],"was":0}]`}
		if err := c.Create(ctx, orig.DeepCopy()); err != nil {
			t.Fatal(err)
		}
		key := client.ObjectKeyFromObject(orig)
		for _, old := range []client.Object{&v1alpha2.MeshConfig{}, &v1alpha1.MeshConfig{}} {
			if err := c.Get(ctx, key, old); err != nil {
				t.Fatal(err)
			}
			if a := old.GetAnnotations()[lossless.AnnotationV1Alpha3Fields]; !strings.Contains(a, registry) {
				t.Errorf("read as %T, the image registry is gone: %s is %q", old, lossless.AnnotationV1Alpha3Fields, a)
			}
			if err := c.Update(ctx, old); err != nil {
				t.Fatal(err)
			}
			got := &v1alpha3.MeshConfig{}
			if err := c.Get(ctx, key, got); err != nil {
				t.Fatal(err)
			}
			if !apiequality.Semantic.DeepEqual(orig.Spec, got.Spec) {
				t.Errorf("an unchanged write through %T changed the stored spec:\nwant %+v\ngot  %+v", old, orig.Spec, got.Spec)
			}
			if len(got.Annotations) != 0 {
				t.Errorf("after a write through %T the stored object carries %v", old, got.Annotations)
			}
		}
	})

	t.Run("list 500 objects in an old version", func(t *testing.T) {
		const n = 500
		createMany(t, c, "listed", n)
		list := &v1alpha1.MeshConfigList{}
		if err := c.List(ctx, list, client.InNamespace("listed")); err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != n {
			t.Fatalf("listed %d objects as v1alpha1, want %d", len(list.Items), n)
		}
		for _, item := range list.Items {
			if item.APIVersion != "" && item.APIVersion != v1alpha1.GroupVersion.String() {
				t.Fatalf("%s: apiVersion %s", item.Name, item.APIVersion)
			}
			if !strings.Contains(item.Annotations[lossless.AnnotationV1Alpha3Fields], `"repoServerImage":"listed:`) {
				t.Fatalf("%s: v1alpha3 data not kept: %v", item.Name, item.Annotations)
			}
		}
	})

	t.Run("a CRD re-applied without the stanza is repaired", func(t *testing.T) {
		// What a Helm upgrade does: the chart's CRD has strategy None.
		setStrategyNone(ctx, t, c)
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			crd := &apixv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: fsmnames.MeshConfigCRDName}, crd); err != nil {
				return false, err
			}
			return crd.Spec.Conversion != nil && crd.Spec.Conversion.Strategy == apixv1.WebhookConverter, nil
		})
		if err != nil {
			t.Fatalf("the server did not restore the conversion stanza: %v", err)
		}
		// Ready reads the server's informer cache, which sees the repair a
		// moment after the apiserver does.
		var notReady error
		err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			notReady = conv.Server.Ready(ctx)
			return notReady == nil, nil
		})
		if err != nil {
			t.Errorf("not ready after the repair: %v", notReady)
		}
	})

	t.Run("rollback to strategy None keeps storage-version reads working", func(t *testing.T) {
		// The documented rollback: stop the converter (it would repair the
		// stanza), then set the strategy back to None.
		if err := conv.Stop(); err != nil {
			t.Fatal(err)
		}
		setStrategyNone(ctx, t, c)
		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "updated-via-v1alpha2"}, got); err != nil {
			t.Fatalf("storage-version read after rollback: %v", err)
		}
		if got.Spec.Sidecar.LogLevel != "info" {
			t.Errorf("storage-version read after rollback: sidecar.logLevel = %q, want the last write's \"info\"", got.Spec.Sidecar.LogLevel)
		}
	})
}

// setStrategyNone patches the MeshConfig CRD as the chart ships it and as
// the uninstall leaves it: strategy None, no webhook.
func setStrategyNone(ctx context.Context, t *testing.T, c client.Client) {
	t.Helper()
	crd := &apixv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName}}
	patch := []byte(`{"spec":{"conversion":{"strategy":"None","webhook":null}}}`)
	if err := c.Patch(ctx, crd, client.RawPatch(types.MergePatchType, patch)); err != nil {
		t.Fatalf("setting strategy None on CRD %s: %v", fsmnames.MeshConfigCRDName, err)
	}
}

// createMany creates n v1alpha3 objects in namespace ns with a few writers.
func createMany(t testing.TB, c client.Client, ns string, n int) {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	errs := testenv.Concurrently(n, 8, func(i int) error {
		mc := preset(t, fmt.Sprintf("mc-%04d", i))
		mc.Namespace = ns
		mc.Spec.Misc.RepoServerImage = fmt.Sprintf("%s:%d", ns, i)
		return c.Create(ctx, mc)
	})
	if len(errs) > 0 {
		t.Fatalf("%d creates failed, first: %v", len(errs), errs[0])
	}
}
