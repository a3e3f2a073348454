//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
)

var (
	meshConfigV1alpha1 = schema.GroupVersionResource{Group: "config.flomesh.io", Version: "v1alpha1", Resource: "meshconfigs"}
	crdResource        = apiextv1.SchemeGroupVersion.WithResource("customresourcedefinitions")
)

// oldVersionReader reads a MeshConfig at v1alpha1 (not the storage version:
// with a Webhook stanza the read goes through the converter's Service) every
// 100 ms until stop, recording each failure with the stanza's strategy.
type oldVersionReader struct {
	mu       sync.Mutex
	reads    int
	failures []string
	stop     func()
}

func startOldVersionReader(t *testing.T, cfg *rest.Config, namespace, name string) *oldVersionReader {
	t.Helper()
	quiet := rest.CopyConfig(cfg)
	quiet.WarningHandler = rest.NoWarnings{} // "v1alpha1 MeshConfig is deprecated", ten times a second
	dyn, err := dynamic.NewForConfig(quiet)
	if err != nil {
		t.Fatal(err)
	}
	r := &oldVersionReader{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r.stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		for ctx.Err() == nil {
			strategy := "?"
			if crd, err := dyn.Resource(crdResource).Get(ctx, "meshconfigs.config.flomesh.io", metav1.GetOptions{}); err == nil {
				strategy, _, _ = unstructured.NestedString(crd.Object, "spec", "conversion", "strategy")
			}
			rctx, rcancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := dyn.Resource(meshConfigV1alpha1).Namespace(namespace).Get(rctx, name, metav1.GetOptions{})
			rcancel()
			if ctx.Err() != nil {
				return
			}
			r.mu.Lock()
			r.reads++
			if err != nil {
				r.failures = append(r.failures, fmt.Sprintf("%s (conversion %s just before): %v", time.Now().Format("15:04:05.000"), strategy, err))
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
	return r
}

// results are the reads made so far and the failed ones.
func (r *oldVersionReader) results() (int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, append([]string(nil), r.failures...)
}

// conversionStrategy is the MeshConfig CRD's spec.conversion.strategy now.
func conversionStrategy(ctx context.Context, dyn dynamic.Interface) (string, error) {
	crd, err := dyn.Resource(crdResource).Get(ctx, "meshconfigs.config.flomesh.io", metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	s, _, _ := unstructured.NestedString(crd.Object, "spec", "conversion", "strategy")
	return s, nil
}
