package injector_test

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// testProbeScheme: a probe scheme written "https" is refused by the
// apiserver unmeshed, but the injector rewrites the probe to a plain HTTP
// one the apiserver stores. Admitted as FSM v1.5.1 admits it (an HTTP app
// passes it), with a warning the client sees naming the probe and the
// value: an HTTPS app would otherwise fail it for ever, the pod restarting
// with nothing saying why.
func (e *e2e) testProbeScheme(t *testing.T) {
	ctx := context.Background()
	cl, rec := e.warningClient(t)
	withScheme := func(ns string) *corev1.Pod {
		p := pod("web", ns)
		p.Spec.Containers[0].LivenessProbe.HTTPGet.Scheme = "https"
		return p
	}
	unmeshed := e.namespace(t, ctx, "scheme-unmeshed", false)
	if err := cl.Create(ctx, withScheme(unmeshed)); err == nil || !strings.Contains(err.Error(), `httpGet.scheme: Unsupported value: "https"`) {
		t.Fatalf("unmeshed create: %v, want the apiserver's refusal of the scheme", err)
	}
	meshed := e.namespace(t, ctx, "scheme-meshed", true)
	p := withScheme(meshed)
	if err := cl.Create(ctx, p); err != nil {
		t.Fatalf("meshed create: %v", err)
	}
	want := `container "app" spec.containers[0].livenessProbe.httpGet.scheme: "https" is not HTTP or HTTPS`
	if !slices.ContainsFunc(rec.all(), func(w string) bool { return strings.Contains(w, want) }) {
		t.Fatalf("warnings %q, want one containing %q", rec.all(), want)
	}
}

// warningClient is a client of the test apiserver that records the
// warnings the admission webhooks send back.
func (e *e2e) warningClient(t *testing.T) (client.Client, *warnings) {
	t.Helper()
	rec := &warnings{}
	cfg := rest.CopyConfig(e.cfg)
	cfg.WarningHandler = rec
	cl, err := client.New(cfg, client.Options{Scheme: e.cl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	return cl, rec
}

type warnings struct {
	mu   sync.Mutex
	msgs []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, msg string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.msgs = append(w.msgs, msg)
}

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.msgs)
}
