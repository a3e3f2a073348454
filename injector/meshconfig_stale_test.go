package injector

import (
	"context"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// staleReader hands the next Get a copy of stale, as a cache read just
// before the informer stored a newer version, and holds that Get until
// release is closed: the admission that read it is preempted between its
// read and CachedMeshConfig's lock.
type staleReader struct {
	client.Reader
	stale   *configv1alpha3.MeshConfig
	read    chan struct{} // closed once the stale read is made
	release chan struct{}
}

func (r *staleReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if r.stale != nil {
		if mc, ok := obj.(*configv1alpha3.MeshConfig); ok {
			stale := r.stale
			r.stale = nil
			stale.DeepCopyInto(mc)
			close(r.read)
			<-r.release
			return nil
		}
	}
	return r.Reader.Get(ctx, key, obj, opts...)
}

// TestCachedMeshConfigIgnoresStaleRead: two admissions read the MeshConfig
// around a change (the informer stores a fixed version between their
// reads). The one that read the older, rejected version takes the lock
// last; it must not apply that version again over the newer one: the
// rejection gauge would say the stored MeshConfig is rejected (until some
// later pod create reads again) and a second Warning Event and error line
// would report a version already replaced.
func TestCachedMeshConfigIgnoresStaleRead(t *testing.T) {
	s := runtime.NewScheme()
	if err := configv1alpha3.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	cl := fake.NewClientBuilder().WithScheme(s).Build()
	rec := &noteRecorder{}
	reader := &staleReader{Reader: cl}
	src := &CachedMeshConfig{Reader: reader, Namespace: "fsm-system", Logger: testr.New(t), Recorder: rec}
	ctx := context.Background()

	mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
	mc.Spec.Sidecar.LogLevel = "verbose" // rejected
	if err := cl.Create(ctx, mc); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Settings(ctx); err != nil {
		t.Fatal(err)
	}
	if g := rejectedGauge(t); len(g) != 1 {
		t.Fatalf("rejected fields %v after the invalid MeshConfig, want one", g)
	}
	rec.take()
	rejected := mc.DeepCopy() // what the cache held until the fix

	mc.Spec.Sidecar.LogLevel = "info"
	if err := cl.Update(ctx, mc); err != nil {
		t.Fatal(err)
	}
	reader.stale, reader.read, reader.release = rejected, make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() { // the admission that read before the informer's update
		_, err := src.Settings(ctx)
		done <- err
	}()
	<-reader.read
	// An admission that reads the fixed version.
	got, err := src.Settings(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.LogLevel != "info" {
		t.Fatalf("log level %q after the fix, want info", got.LogLevel)
	}
	close(reader.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if g := rejectedGauge(t); len(g) != 0 {
		t.Errorf("fsm_webhooks_injector_meshconfig_rejected fields %v once both admissions are done, want none: resourceVersion %s (stored) is valid; %s was replaced",
			g, mc.ResourceVersion, rejected.ResourceVersion)
	}
	if ev := rec.take(); len(ev) != 0 {
		t.Errorf("events %q after the fix, want none: %s was reported when it was stored", ev, rejected.ResourceVersion)
	}
	if got, err := src.Settings(ctx); err != nil || got.LogLevel != "info" {
		t.Errorf("settings read again: log level %q (%v), want info", got.LogLevel, err)
	}
}
