package injector

import (
	"context"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestCachedMeshConfigWithoutCRD: without the MeshConfig CRD pods are
// injected with the built-in defaults, as without a MeshConfig, rather than
// refused with the cache's "no matches for kind".
func TestCachedMeshConfigWithoutCRD(t *testing.T) {
	c := &CachedMeshConfig{Reader: testenv.NoMeshConfigCRD{}, Namespace: "fsm-system", Logger: testr.New(t)}
	s, err := c.Settings(context.Background())
	if err != nil {
		t.Fatalf("Settings without the MeshConfig CRD: %v", err)
	}
	if !reflect.DeepEqual(s, checkedDefaults()) {
		t.Errorf("Settings without the MeshConfig CRD = %+v, want the built-in defaults", s)
	}
}

// lookups is a cache whose look-ups of the MeshConfig informer fail with
// errs in turn, then hand out inf.
type lookups struct {
	cache.Informers
	testenv.NoMeshConfigCRD
	mu   sync.Mutex
	errs []error
	inf  cache.Informer
}

func (l *lookups) GetInformer(context.Context, client.Object, ...cache.InformerGetOption) (cache.Informer, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return l.inf, nil
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}

// watched is an informer that closes added when a handler is added.
type watched struct {
	cache.Informer
	added chan struct{}
}

func (w watched) AddEventHandler(toolscache.ResourceEventHandler) (toolscache.ResourceEventHandlerRegistration, error) {
	close(w.added)
	return nil, nil
}

func (watched) RemoveEventHandler(toolscache.ResourceEventHandlerRegistration) error { return nil }

// TestCachedMeshConfigStartOutlivesDiscoveryErrors: while it waits for the
// MeshConfig CRD, Start looks the kind up every 10 s; a look-up failing
// otherwise (the apiserver restarting or overloaded: the discovery request
// fails) ended Start, and with it the manager and every webhook, which
// "no MeshConfig CRD is not fatal" promised not to do.
func TestCachedMeshConfigStartOutlivesDiscoveryErrors(t *testing.T) {
	gv := schema.GroupVersion{Group: "config.flomesh.io", Version: "v1alpha3"}
	noCRD := &meta.NoKindMatchError{GroupKind: gv.WithKind("MeshConfig").GroupKind(), SearchedVersions: []string{gv.Version}}
	// As controller-runtime's REST mapper reports a failed discovery.
	unavailable := fmt.Errorf("failed to get API group resources: %w", &apiutil.ErrResourceDiscoveryFailed{
		gv: apierrors.NewServiceUnavailable("the server is currently unable to handle the request")})
	for _, tc := range []struct {
		name string
		errs []error
	}{
		{"CRD installed late", []error{noCRD, noCRD}},
		{"discovery failing while the CRD is missing", []error{noCRD, unavailable, noCRD}},
		{"discovery failing at the start", []error{unavailable}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			added := make(chan struct{})
			c := &CachedMeshConfig{Reader: &lookups{errs: tc.errs, inf: watched{added: added}}, Namespace: "fsm-system",
				Logger: testr.New(t), retryEvery: time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- c.Start(ctx) }()
			select {
			case <-added:
			case err := <-done:
				t.Fatalf("Start ended before the MeshConfig kind was served: %v", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Start = %v once ctx ended, want nil", err)
			}
			if c.crdMissing.Load() {
				t.Error("still reading the MeshConfig CRD as missing once it is watched")
			}
		})
	}
}
