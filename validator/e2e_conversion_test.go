package validator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/testr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter/convertertest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestE2EConversionAnnotations: with the converter serving (as in
// production), a write through v1alpha1/v1alpha2 is judged as the v1alpha3
// object it is stored as, whose data the conversion annotation carries, and
// a v1alpha3 write cannot store an annotation, or data too large for the
// converted object's annotations, that breaks reads in the old versions. The denial names the value's place in the annotation.
func TestE2EConversionAnnotations(t *testing.T) {
	// The client logs the apiserver's deprecation warnings through
	// controller-runtime's global logger, which outlives a test.
	ctrllog.SetLogger(logr.Discard())
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{v1alpha1.AddToScheme, v1alpha2.AddToScheme, v1alpha3.AddToScheme, corev1.AddToScheme, admissionregistrationv1.AddToScheme} {
		if err := add(scheme); err != nil {
			t.Fatal(err)
		}
	}
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()},
		Client:            client.Options{Scheme: scheme},
	})
	convertertest.Start(t, env, scheme, testr.New(t).WithName("converter"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client
	url := serveValidator(ctx, t, validator.Options{Reader: c, FSMNamespace: fsmNS, MeshConfigName: meshConfig, Logger: testr.New(t)})
	register(ctx, t, c, url)
	mustCreate(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "apps"}})

	hub := func(name string, annotations map[string]string) *v1alpha3.MeshConfig {
		var h v1alpha3.MeshConfig
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(presetMeshConfig(t).Object, &h); err != nil {
			t.Fatal(err)
		}
		h.Namespace, h.Name, h.Annotations = "apps", name, annotations
		return &h
	}
	// spoke is the preset in an old version, carrying annotations.
	spoke := func(version, name string, annotations map[string]string) client.Object {
		h := hub(name, nil)
		switch version {
		case "v1alpha1":
			var s v1alpha1.MeshConfig
			if err := s.ConvertFrom(h); err != nil {
				t.Fatal(err)
			}
			s.Annotations = annotations
			return &s
		default:
			var s v1alpha2.MeshConfig
			if err := s.ConvertFrom(h); err != nil {
				t.Fatal(err)
			}
			s.Annotations = annotations
			return &s
		}
	}
	const v3 = lossless.AnnotationV1Alpha3Fields
	const ann = "metadata.annotations[" + v3 + "]"

	t.Run("v1alpha1 write: data only the annotation holds is checked", func(t *testing.T) {
		obj := spoke("v1alpha1", "old1", map[string]string{v3: `{"traffic":{"outboundIPRangeInclusionList":["fd00::/8"],"networkInterfaceExclusionList":["eth0$(id)"]}}`})
		wantDenied(t, c.Create(ctx, obj),
			ann+`.traffic.outboundIPRangeInclusionList[0]: Invalid value: "fd00::/8": the sidecar listens on IPv4 only`,
			ann+`.traffic.networkInterfaceExclusionList[0]: Invalid value: "eth0$(id)": must be a Linux network interface name`,
			`(stored as spec.traffic.networkInterfaceExclusionList[0] in v1alpha3)`)
	})

	t.Run("v1alpha2 write: v1alpha3-only sections are checked", func(t *testing.T) {
		obj := spoke("v1alpha2", "old2", map[string]string{v3: `{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"Sometimes"}}`})
		wantDenied(t, c.Create(ctx, obj),
			ann+`.image.pullPolicy: Unsupported value: "Sometimes": supported values: "Always", "IfNotPresent", "Never" (stored as spec.image.pullPolicy in v1alpha3)`)
	})

	t.Run("v1alpha2 write with a valid annotation is stored with it", func(t *testing.T) {
		obj := spoke("v1alpha2", "ok2", map[string]string{v3: `{"image":{"registry":"flomesh","tag":"latest","pullPolicy":"Always"}}`})
		mustCreate(ctx, t, c, obj)
		var got v1alpha3.MeshConfig
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.Image.PullPolicy != "Always" {
			t.Errorf("stored spec.image.pullPolicy %q, want Always", got.Spec.Image.PullPolicy)
		}
	})

	// The apiserver checks the annotations of what the converter returns
	// against its 256 KiB total: stored, this object would fail every GET
	// and LIST of MeshConfigs in v1alpha1/v1alpha2 ("corrupt object").
	t.Run("v1alpha3 write too large to read in the old versions is refused", func(t *testing.T) {
		obj := hub("big3", nil)
		for i := range 3500 {
			obj.Spec.Sidecar.LocalDNSProxy.DB = append(obj.Spec.Sidecar.LocalDNSProxy.DB, v1alpha3.ResolveDN{
				DN:  fmt.Sprintf("svc-%05d.payments.example.internal", i),
				IPs: []v1alpha3.ResolveAddr{{IPv4: fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256)}},
			})
		}
		wantDenied(t, c.Create(ctx, obj),
			`spec.sidecar.localDNSProxy.db: Forbidden: read as config.flomesh.io/v1alpha1 this MeshConfig would carry`,
			`over the apiserver's limit of 262144 bytes in total`)
		var list v1alpha1.MeshConfigList
		if err := c.List(ctx, &list, client.InNamespace("apps")); err != nil {
			t.Errorf("listing MeshConfigs as v1alpha1: %v", err)
		}
		obj = hub("big3", nil)
		obj.Spec.Sidecar.LocalDNSProxy.DB = []v1alpha3.ResolveDN{{DN: "a.example.internal", IPs: []v1alpha3.ResolveAddr{{IPv4: "10.0.0.1"}}}}
		mustCreate(ctx, t, c, obj)
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &v1alpha1.MeshConfig{}); err != nil {
			t.Errorf("reading a v1alpha3 object with a small table as v1alpha1: %v", err)
		}
	})

	// A section the v1alpha3 object lacks reads as zero values in v1alpha1;
	// edited there, it is stored with them, which the v1alpha3 schema
	// refuses and the apiserver does not check. The write goes through
	// (FSM admitted it) with a warning naming the fields; an unchanged
	// write gets none.
	t.Run("v1alpha1 edit of a section v1alpha3 lacked is warned of", func(t *testing.T) {
		const stored = "the config.flomesh.io/v1alpha3 object this write is stored as fails the v1alpha3 schema"
		obj := presetMeshConfig(t)
		unstructured.RemoveNestedField(obj.Object, "spec", "traffic")
		obj.SetNamespace("apps")
		obj.SetName("notraffic")
		mustCreate(ctx, t, c, obj)
		wc, rec := warningClient(t, env.Config)
		old := &unstructured.Unstructured{}
		old.SetAPIVersion("config.flomesh.io/v1alpha1")
		old.SetKind("MeshConfig")
		if err := wc.Get(ctx, client.ObjectKeyFromObject(obj), old); err != nil {
			t.Fatal(err)
		}
		if err := wc.Update(ctx, old); err != nil {
			t.Fatalf("unchanged v1alpha1 write: %v", err)
		}
		for _, w := range rec.all() {
			if strings.HasPrefix(w, stored) {
				t.Errorf("unchanged v1alpha1 write warned: %q", w)
			}
		}
		// The v1alpha1 schema makes the client send the lists it requires
		// (and would have refused the edit without them); v1alpha3 also
		// wants its interceptionMode and serviceAccessMode enums, which
		// v1alpha1 does not check.
		for _, set := range []struct {
			v    any
			path []string
		}{
			{true, []string{"spec", "traffic", "enableEgress"}},
			{[]any{}, []string{"spec", "traffic", "inboundPortExclusionList"}},
			{[]any{}, []string{"spec", "traffic", "outboundIPRangeExclusionList"}},
			{[]any{}, []string{"spec", "traffic", "outboundPortExclusionList"}},
		} {
			if err := unstructured.SetNestedField(old.Object, set.v, set.path...); err != nil {
				t.Fatal(err)
			}
		}
		if err := wc.Update(ctx, old); err != nil {
			t.Fatalf("v1alpha1 edit of spec.traffic: %v", err)
		}
		var warned string // one warning per schema error
		for _, w := range rec.all() {
			if strings.HasPrefix(w, stored) {
				warned += w + "\n"
			}
		}
		for _, want := range []string{`spec.traffic.interceptionMode: Unsupported value: "": supported values: "NodeLevel", "PodLevel"`,
			`spec.traffic.serviceAccessMode: Unsupported value: "": supported values: "ip", "domain", "mixed"`} {
			if !strings.Contains(warned, want) {
				t.Errorf("warnings %q: none starts %q and contains %q", rec.all(), stored, want)
			}
		}
		// What the warning says of the stored object is so.
		var got v1alpha3.MeshConfig
		if err := c.Get(ctx, client.ObjectKeyFromObject(obj), &got); err != nil {
			t.Fatal(err)
		}
		if got.Spec.Traffic.InterceptionMode != "" || !got.Spec.Traffic.EnableEgress {
			t.Errorf("stored traffic %+v, want enableEgress and no interceptionMode", got.Spec.Traffic)
		}
	})

	// The stored object is read with integers as int64, as the apiserver
	// reads it: 2^60 in maxDataPlaneConnections (type integer, no format,
	// no maximum) draws no "cannot be created again" warning, and a
	// v1alpha3 copy of the stored object is indeed created.
	t.Run("v1alpha1 write of an integer above 2^53: no false schema warning", func(t *testing.T) {
		const big = int64(1) << 60
		var h v1alpha3.MeshConfig
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(presetMeshConfig(t).Object, &h); err != nil {
			t.Fatal(err)
		}
		h.Namespace, h.Name = "apps", "big1"
		var s v1alpha1.MeshConfig
		if err := s.ConvertFrom(&h); err != nil {
			t.Fatal(err)
		}
		s.Spec.Sidecar.MaxDataPlaneConnections = int(big)
		wc, rec := warningClient(t, env.Config)
		u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&s)
		if err != nil {
			t.Fatal(err)
		}
		obj := &unstructured.Unstructured{Object: u}
		obj.SetAPIVersion("config.flomesh.io/v1alpha1")
		obj.SetKind("MeshConfig")
		if err := wc.Create(ctx, obj); err != nil {
			t.Fatalf("v1alpha1 create: %v", err)
		}
		const stored = "the config.flomesh.io/v1alpha3 object this write is stored as fails the v1alpha3 schema"
		var warned string // one warning per schema error
		for _, w := range rec.all() {
			if strings.HasPrefix(w, stored) {
				warned += w + "\n"
			}
		}

		// The stored object, copied and created again as v1alpha3.
		got := &unstructured.Unstructured{}
		got.SetAPIVersion("config.flomesh.io/v1alpha3")
		got.SetKind("MeshConfig")
		if err := c.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "big1"}, got); err != nil {
			t.Fatal(err)
		}
		if v, _, _ := unstructured.NestedInt64(got.Object, "spec", "sidecar", "maxDataPlaneConnections"); v != big {
			t.Fatalf("stored maxDataPlaneConnections %d, want %d", v, big)
		}
		cp := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "config.flomesh.io/v1alpha3", "kind": "MeshConfig",
			"metadata": map[string]any{"namespace": "apps", "name": "big1-copy"},
			"spec":     got.Object["spec"],
		}}
		if err := c.Create(ctx, cp); err != nil {
			t.Fatalf("v1alpha3 copy of the stored object refused: %v", err)
		}
		if warned != "" {
			t.Errorf("the v1alpha1 write was warned its stored object cannot be created again, but a v1alpha3 copy was created: %q", warned)
		}
	})

	t.Run("v1alpha3 write: legacy fields that would break old-version reads are refused", func(t *testing.T) {
		obj := hub("new3", map[string]string{lossless.AnnotationV1Alpha2Fields: `{"sidecar":{"sidecarDrivers":[{"sidecarName":"pipy","proxyServerPort":2147483648}]}}`})
		wantDenied(t, c.Create(ctx, obj),
			`metadata.annotations[`+lossless.AnnotationV1Alpha2Fields+`]: Invalid value:`,
			`or reads in config.flomesh.io/v1alpha1 fail`)
		var list v1alpha2.MeshConfigList
		if err := c.List(ctx, &list, client.InNamespace("apps")); err != nil {
			t.Errorf("listing MeshConfigs as v1alpha2: %v", err)
		}
	})
}
