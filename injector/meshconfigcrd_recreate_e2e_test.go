package injector_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestMeshConfigCRDDeletedAndRecreated: the MeshConfig CRD deleted (every
// MeshConfig with it) while the injector runs, then installed again with a
// MeshConfig, as a restore or a reinstall does. Meanwhile pods are injected
// with the built-in defaults, as FSM v1.5.1's injector does without a
// MeshConfig; afterwards the re-created MeshConfig applies, without a
// restart.
func TestMeshConfigCRDDeletedAndRecreated(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := configv1alpha3.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := apiextv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	env := testenv.Start(t, testenv.Options{CRDDirectoryPaths: []string{testenv.MeshConfigCRDs()}, Client: client.Options{Scheme: scheme}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c, err := cache.New(env.Config, cache.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = c.Start(ctx) }()
	if !c.WaitForCacheSync(ctx) {
		t.Fatal("cache did not sync")
	}
	const ns = fsmNamespace
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	mc := &injector.CachedMeshConfig{Reader: c, Namespace: ns, Logger: testr.New(t)}
	go func() { _ = mc.Start(ctx) }()
	create := func(level string) {
		t.Helper()
		m := presetMeshConfig(t)
		m.Spec.Sidecar.LogLevel = level
		if err := env.Client.Create(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	waitLevel := func(want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			s, err := mc.Settings(ctx)
			if err == nil && s.LogLevel == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("Settings: log level %q, err %v; want %q within %s", s.LogLevel, err, want, within)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	create("debug")
	waitLevel("debug", 10*time.Second)

	crd := &apiextv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: fsmnames.MeshConfigCRDName}}
	if err := env.Client.Delete(ctx, crd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(crd), &apiextv1.CustomResourceDefinition{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CRD not gone: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitLevel(injector.DefaultSidecarLogLevel, 10*time.Second)

	if _, err := envtest.InstallCRDs(env.Config, envtest.CRDInstallOptions{Paths: []string{testenv.MeshConfigCRDs()}, ErrorIfPathMissing: true}); err != nil {
		t.Fatal(err)
	}
	create("warn")
	// The MeshConfig informer's list fails while the CRD is gone and is
	// retried with client-go's back-off (at most 30 s).
	waitLevel("warn", 60*time.Second)
}
