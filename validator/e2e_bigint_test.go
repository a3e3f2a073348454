package validator_test

import (
	"context"
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

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/converter/convertertest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestE2EBigIntegerWarningIsFalse: a v1alpha1 write of FSM's preset
// with spec.sidecar.maxDataPlaneConnections 2^60 (an integer every schema
// version accepts) draws no "cannot be created again" warning, and a
// v1alpha3 copy of the stored object is indeed created by the apiserver.
func TestE2EBigIntegerWarningIsFalse(t *testing.T) {
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
	var warned string
	for _, w := range rec.all() {
		if strings.HasPrefix(w, stored) {
			warned = w
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
}
