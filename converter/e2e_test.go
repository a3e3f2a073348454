package converter_test

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
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

// startConverter starts the apiserver with the generated CRD, serves the
// converter over TLS on loopback and switches the CRD to it the way the
// serving layer does: probe first, then EnableWebhook.
func startConverter(t testing.TB, log logr.Logger) *testenv.Env {
	t.Helper()
	// The client logs the apiserver's deprecation warnings for v1alpha1/2
	// through controller-runtime's global logger, which outlives a test.
	ctrllog.SetLogger(logr.Discard())
	scheme := e2eScheme(t)
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()},
		Client:            client.Options{Scheme: scheme},
	})
	mux := http.NewServeMux()
	mux.Handle(converter.Path, reviewhttp.NewConversion(converter.NewHandler(scheme, v1alpha3.GroupVersion.Group, log)))
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	caBundle := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})

	ctx := context.Background()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := converter.Probe(ctx, u.Host, u.Hostname(), caBundle); err != nil {
		t.Fatalf("probe: %v", err)
	}
	desired, err := converter.DesiredConversion(converter.Endpoint{URL: srv.URL + converter.Path, CABundle: caBundle})
	if err != nil {
		t.Fatal(err)
	}
	changed, err := converter.EnableWebhook(ctx, env.Client, desired)
	if err != nil || !changed {
		t.Fatalf("EnableWebhook: changed=%v err=%v", changed, err)
	}
	if changed, err := converter.EnableWebhook(ctx, env.Client, desired); err != nil || changed {
		t.Fatalf("EnableWebhook again must be a no-op: changed=%v err=%v", changed, err)
	}
	waitForConversion(t, env.Client)
	return env
}

// waitForConversion waits until the apiserver uses the webhook (CRD changes
// reach the request path asynchronously): a v1alpha3 object read as
// v1alpha2 then carries the v1alpha3-fields annotation.
func waitForConversion(t testing.TB, c client.Client) {
	t.Helper()
	ctx := context.Background()
	probe := preset(t, "conversion-ready")
	probe.Spec.Misc.RepoServerImage = "not-the-default:1"
	if err := c.Create(ctx, probe); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		got := &v1alpha2.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(probe), got); err != nil {
			return false, nil
		}
		_, ok := got.Annotations[lossless.AnnotationV1Alpha3Fields]
		return ok, nil
	})
	if err != nil {
		t.Fatalf("the apiserver never used the conversion webhook: %v", err)
	}
	if err := c.Delete(ctx, probe); err != nil {
		t.Fatal(err)
	}
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
	env := startConverter(t, testr.New(t))
	c := env.Client
	ctx := context.Background()

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

	t.Run("rollback to strategy None keeps storage-version reads working", func(t *testing.T) {
		changed, err := converter.DisableWebhook(ctx, c)
		if err != nil || !changed {
			t.Fatalf("DisableWebhook: changed=%v err=%v", changed, err)
		}
		crd := &apixv1.CustomResourceDefinition{}
		if err := c.Get(ctx, client.ObjectKey{Name: converter.CRDName}, crd); err != nil {
			t.Fatal(err)
		}
		if converter.ConversionEnabled(crd) {
			t.Fatalf("conversion still enabled: %+v", crd.Spec.Conversion)
		}
		got := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: "default", Name: "updated-via-v1alpha2"}, got); err != nil {
			t.Fatalf("storage-version read after rollback: %v", err)
		}
	})
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
