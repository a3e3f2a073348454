// Package bench holds the injector's benchmarks (JSON AdmissionReview in,
// JSON AdmissionReview out, through the served webhooks/reviewhttp wrapper) and,
// in ./load, a load tool against a real apiserver.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

const benchNamespace = "bench"

// created counts bootstrap Secrets the handler created.
var created atomic.Int64

var pods = []struct{ name, file string }{
	{"small", "pod-small.json"},
	{"env2000", "pod-2000-env.json"},
}

// review wraps a pod in an AdmissionReview as the apiserver sends it.
func review(tb testing.TB, file string) []byte {
	tb.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		tb.Fatal(err)
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("705ab4f5-6393-11e8-b7cc-42010a800002"),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: benchNamespace,
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// newInjector is the handler with a warm key pool, refilled until ctx ends,
// and a fake client.
func newInjector(tb testing.TB, ctx context.Context, alg certs.KeyAlgorithm) http.Handler {
	return newInjectorWriting(tb, ctx, alg, nil)
}

// newInjectorWriting is newInjector with Options.Pending: nil, the
// admission writes the Secret; set, it only records it for the writer
// controller (--bootstrap-secret-writer=controller).
func newInjectorWriting(tb testing.TB, ctx context.Context, alg certs.KeyAlgorithm, pending *injector.PendingSecrets) http.Handler {
	tb.Helper()
	issuer, err := certstest.New(ctx, certstest.Options{Algorithm: alg, PoolSize: 256, RecycledKeys: 32})
	if err != nil {
		tb.Fatal(err)
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        benchNamespace,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: "fsm"},
		Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"},
	}}
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		tb.Fatal(err)
	}
	reader := fake.NewClientBuilder().WithScheme(scheme).WithObjects(ns).Build()
	// controller-runtime's fake client rebuilds a REST mapper on every
	// Create (about 2 ms); the benchmark measures the injector, so Secret
	// creation goes to a fake that only checks and counts what it gets.
	writer := interceptor.NewClient(reader, interceptor.Funcs{
		Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			s, ok := obj.(*corev1.Secret)
			if !ok || s.Namespace != benchNamespace || len(s.Data[injector.RepoCertKey]) == 0 {
				return fmt.Errorf("unexpected object created: %T %s/%s", obj, obj.GetNamespace(), obj.GetName())
			}
			created.Add(1)
			return nil
		},
	})
	h, err := injector.NewHandler(injector.Options{
		Client: writer, Namespaces: cachedReader{ns.Name: ns}, Issuer: issuer,
		MeshName: "fsm", FSMNamespace: "fsm-system", Pending: pending, SecretWriter: injector.SecretWriterController,
		SidecarImage: "flomesh/pipy:1.5.14", InitImage: "flomesh/fsm-sidecar-init:1.5.1", HealthcheckImage: "flomesh/fsm-healthcheck:1.5.1",
	})
	if err != nil {
		tb.Fatal(err)
	}
	return reviewhttp.NewAdmission(h)
}

// cachedReader reads Namespaces as serve's Namespaces reader (the
// manager's client, backed by its informer cache) does: a lookup and a deep
// copy into the caller's object, controller-runtime's CacheReader.Get. The
// fake client serializes every object it returns to JSON and back, 27 µs of
// the small pod's ~0.29 ms that serve does not spend.
type cachedReader map[string]*corev1.Namespace

func (r cachedReader) Get(_ context.Context, key client.ObjectKey, obj client.Object, _ ...client.GetOption) error {
	out, ok := obj.(*corev1.Namespace)
	if !ok {
		return fmt.Errorf("cachedReader holds Namespaces, asked for a %T", obj)
	}
	ns, ok := r[key.Name]
	if !ok {
		return apierrors.NewNotFound(corev1.Resource("namespaces"), key.Name)
	}
	ns.DeepCopyInto(out)
	return nil
}

func (r cachedReader) List(context.Context, client.ObjectList, ...client.ListOption) error {
	return errors.New("cachedReader: List is not used by the injector")
}

// floor decodes the pod and admits it unchanged: the cost of the webhook
// plumbing alone.
func floor() http.Handler {
	return reviewhttp.NewAdmission(admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		pod := &corev1.Pod{}
		if err := json.Unmarshal(req.Object.Raw, pod); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		return admission.Allowed("")
	}))
}

// serve posts body to h and returns the decoded response.
func serve(tb testing.TB, h http.Handler, body []byte) *admissionv1.AdmissionResponse {
	req := httptest.NewRequest(http.MethodPost, fsmnames.InjectorPath, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		tb.Fatalf("decoding response: %v", err)
	}
	return out.Response
}

func runBench(b *testing.B, h http.Handler, body []byte, wantPatch bool) {
	resp := serve(b, h, body)
	if !resp.Allowed || (len(resp.Patch) > 0) != wantPatch {
		b.Fatalf("unexpected response: allowed=%v patch=%d bytes result=%v", resp.Allowed, len(resp.Patch), resp.Result)
	}
	var ops []json.RawMessage
	if wantPatch {
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(ops)), "patch-ops")
	b.ReportMetric(float64(len(resp.Patch)), "patch-bytes")
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, fsmnames.InjectorPath, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("HTTP %d", rec.Code)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time (user + system) this process has used, in
// nanoseconds. Per op it is what an admission costs, GC and background
// goroutines included; unlike ns/op it barely moves when other processes
// load the machine.
func processCPU(tb testing.TB) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// BenchmarkInjectHandler is the whole admission: decode, decide, mutate,
// patch, issue the bootstrap cert (warm key pool), create the Secret (fake
// client), encode.
// Each CA's handler is built by the first sub-benchmark that needs it, so
// -bench selecting one CA does not generate the other's keys.
func BenchmarkInjectHandler(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	for _, ca := range []certs.KeyAlgorithm{certs.RSA2048, certs.ECDSAP256} {
		var h http.Handler
		for _, p := range pods {
			body := review(b, p.file)
			b.Run(p.name+"/"+string(ca), func(b *testing.B) {
				if h == nil {
					h = newInjector(b, ctx, ca)
				}
				runBench(b, h, body, true)
			})
		}
	}
}

// BenchmarkInjectHandlerControllerWriter is the admission with
// --bootstrap-secret-writer=controller: decode, decide, mutate, patch,
// record the Secret, encode. The certificate and the Secret write happen
// later in the writer controller (their cost moves off the pod create, it
// does not go away: BenchmarkInjectHandler minus this). Records are never
// consumed here, so the store grows with b.N (a cost the shipped writer,
// which removes each record as it writes, does not have).
func BenchmarkInjectHandlerControllerWriter(b *testing.B) {
	h := newInjectorWriting(b, b.Context(), certs.ECDSAP256, injector.NewPendingSecrets(0))
	for _, p := range pods {
		body := review(b, p.file)
		b.Run(p.name, func(b *testing.B) { runBench(b, h, body, true) })
	}
}

// BenchmarkFloor is decode + encode with an empty patch on the same pods.
func BenchmarkFloor(b *testing.B) {
	h := floor()
	for _, p := range pods {
		body := review(b, p.file)
		b.Run(p.name, func(b *testing.B) { runBench(b, h, body, false) })
	}
}

// TestBenchPodsInjected checks the benchmark inputs take the injection path
// and produce a patch whose size does not depend on the app container's.
func TestBenchPodsInjected(t *testing.T) {
	h := newInjector(t, t.Context(), certs.ECDSAP256)
	var counts []int
	before := created.Load()
	for _, p := range pods {
		resp := serve(t, h, review(t, p.file))
		if !resp.Allowed || len(resp.Patch) == 0 {
			t.Fatalf("%s: not injected: %+v", p.name, resp.Result)
		}
		var ops []map[string]any
		if err := json.Unmarshal(resp.Patch, &ops); err != nil {
			t.Fatal(err)
		}
		counts = append(counts, len(ops))
	}
	if n := created.Load() - before; n != int64(len(pods)) {
		t.Fatalf("%d Secrets created for %d admissions", n, len(pods))
	}
	if counts[0] != counts[1] || counts[0] > 14 {
		t.Fatalf("patch ops small=%d env2000=%d, want equal and <= 14", counts[0], counts[1])
	}
}
