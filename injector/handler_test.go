package injector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
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
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp/reviewhttptest"
)

// stubIssuer is a pure-logic stand-in for the mesh CA; the real CA is used
// in the envtest suite.
type stubIssuer struct{ err error }

func (s stubIssuer) Issue(_ context.Context, req certs.Request) (*certs.Certificate, error) {
	if s.err != nil {
		return nil, s.err
	}
	return &certs.Certificate{CertPEM: []byte("cert " + req.CommonName), KeyPEM: []byte("key"), CABundle: []byte("ca")}, nil
}
func (stubIssuer) CABundle(context.Context) ([]byte, error) { return []byte("ca"), nil }
func (stubIssuer) Provider() string                         { return "stub" }

type recordedEvent struct {
	regarding runtime.Object
	note      string
}

type fakeRecorder struct {
	mu     sync.Mutex
	events []recordedEvent
}

func (r *fakeRecorder) Eventf(regarding, _ runtime.Object, _, _, _, note string, args ...interface{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, recordedEvent{regarding: regarding, note: fmt.Sprintf(note, args...)})
}

type handlerFixture struct {
	h        *Handler
	server   *reviewhttp.Admission
	secrets  []*corev1.Secret
	mu       sync.Mutex
	recorder *fakeRecorder
}

var (
	schemeOnce sync.Once
	scheme     *runtime.Scheme
	schemeErr  error
)

// testScheme is built once: the fuzz target makes a fixture per input.
func testScheme(t testing.TB) *runtime.Scheme {
	t.Helper()
	schemeOnce.Do(func() {
		scheme = runtime.NewScheme()
		schemeErr = clientgoscheme.AddToScheme(scheme)
	})
	if schemeErr != nil {
		t.Fatal(schemeErr)
	}
	return scheme
}

func newHandlerFixture(t testing.TB, issuer certs.Issuer, createErr error, objs ...client.Object) *handlerFixture {
	t.Helper()
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		monitoredNamespace("app", nil),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}},
	).WithObjects(objs...).WithIndex(&corev1.Pod{}, podUUIDIndex, func(o client.Object) []string {
		if id := o.GetLabels()[ProxyUUIDLabel]; id != "" {
			return []string{id}
		}
		return nil
	}).Build()
	f := &handlerFixture{recorder: &fakeRecorder{}}
	writer := interceptor.NewClient(reader, interceptor.Funcs{
		Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
			if createErr != nil {
				return createErr
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			f.secrets = append(f.secrets, obj.(*corev1.Secret))
			return nil
		},
	})
	h, err := NewHandler(Options{
		Client: writer, Namespaces: reader, Pods: reader, Issuer: issuer,
		MeshName: "fsm", FSMNamespace: "fsm-system",
		SidecarImage: testMesh.SidecarImage, InitImage: testMesh.InitImage, HealthcheckImage: testMesh.HealthcheckImage,
		Recorder: f.recorder, NewUUID: seqUUID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	f.h = h
	f.server = reviewhttp.NewAdmission(h)
	return f
}

func reviewBody(t testing.TB, mutate func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	pod := simplePod(nil)
	raw, _ := json.Marshal(pod)
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID("uid-1"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Namespace: "app",
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
	if mutate != nil {
		mutate(req)
	}
	b, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	return b
}

func (f *handlerFixture) post(t testing.TB, body []byte, contentType string) (int, *admissionv1.AdmissionResponse) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, fsmnames.InjectorPath, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	f.server.ServeHTTP(rec, req)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, rec.Body.String())
	}
	if out.Response == nil {
		t.Fatalf("no response in %s", rec.Body.String())
	}
	return rec.Code, out.Response
}

// TestHandlerHTTP drives the handler through the served reviewhttp
// wrapper as the apiserver would, including malformed requests.
// TestDefaultMeshConfigCheckedOnce: without a MeshConfig source the handler
// serves DefaultSettings already validated, so Mutate does not validate them
// on every admission.
func TestDefaultMeshConfigCheckedOnce(t *testing.T) {
	h, err := NewHandler(Options{Client: fake.NewClientBuilder().Build(), Namespaces: fake.NewClientBuilder().Build(), Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := h.opts.MeshConfig.Settings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := DefaultSettings().Checked()
	if !s.validated || !reflect.DeepEqual(s, want) {
		t.Fatalf("default settings = %+v (validated %v), want DefaultSettings().Checked()", s, s.validated)
	}
}

func TestHandlerHTTP(t *testing.T) {
	podJSON := func(p *corev1.Pod) []byte { b, _ := json.Marshal(p); return b }
	tests := []struct {
		name    string
		body    []byte
		allowed bool
		patched bool
		code    int32
		message string
		uid     types.UID
		secrets int
		events  int
	}{
		{name: "injected", body: reviewBody(t, nil), allowed: true, patched: true, uid: "uid-1", secrets: 1},
		{name: "dry run: patched, no Secret", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.DryRun = ptrBool(true) }), allowed: true, patched: true, uid: "uid-1"},
		{name: "unmonitored namespace", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "other" }), allowed: true, uid: "uid-1"},
		{name: "update is not touched", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }), allowed: true, uid: "uid-1"},
		{name: "bad annotation denied with uid and event", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(map[string]string{SidecarInjectionAnnotation: "on"})
			r.Object.Raw = podJSON(p)
		}), code: http.StatusBadRequest, message: `invalid annotation value for key "flomesh.io/sidecar-injection": on`, uid: "uid-1", events: 1},
		// FSM's control plane splits <serviceaccount>.<namespace> on "." and
		// would take the pod for ServiceAccount bookstore of namespace
		// bookbuyer: no certificate is signed for that CN, no Secret written.
		{name: "ServiceAccount name with a dot denied before any certificate", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(nil)
			p.Spec.ServiceAccountName = "bookstore.bookbuyer"
			r.Object.Raw = podJSON(p)
		}), code: http.StatusBadRequest, message: `spec.serviceAccountName "bookstore.bookbuyer": a ServiceAccount name with a dot cannot be meshed: ` +
			`FSM's control plane splits the sidecar identity <serviceaccount>.<namespace> (certificate CN <uuid>.sidecar.<serviceaccount>.<namespace>.<trust domain>) ` +
			`on "." and would read ServiceAccount "bookstore" in namespace "bookbuyer"; use a ServiceAccount whose name has no dot, ` +
			`or opt the pod out with annotation flomesh.io/sidecar-injection: disabled`, uid: "uid-1", events: 1},
		{name: "ServiceAccount name with a dot, dry run: denied too", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(nil)
			p.Spec.ServiceAccountName = "a.b"
			r.Object.Raw = podJSON(p)
			r.DryRun = ptrBool(true)
		}), code: http.StatusBadRequest, message: `would read ServiceAccount "a" in namespace "b"`, uid: "uid-1"},
		{name: "ServiceAccount name with a dot, injection disabled: allowed untouched", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(map[string]string{SidecarInjectionAnnotation: "disabled"})
			p.Spec.ServiceAccountName = "bookstore.bookbuyer"
			r.Object.Raw = podJSON(p)
		}), allowed: true, uid: "uid-1"},
		// The apiserver refuses fsm-init's and the sidecar's Linux security
		// settings in a Windows pod (runAsUser, capabilities): refused here,
		// naming the field, before a Secret is written for a pod never stored.
		{name: "Windows pod denied before any Secret", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(nil)
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			r.Object.Raw = podJSON(p)
		}), code: http.StatusBadRequest, message: `spec.os.name "windows": a Windows pod cannot be meshed`, uid: "uid-1", events: 1},
		{name: "Windows pod, injection disabled: allowed untouched", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			p := simplePod(map[string]string{SidecarInjectionAnnotation: "disabled"})
			p.Spec.OS = &corev1.PodOS{Name: corev1.Windows}
			r.Object.Raw = podJSON(p)
		}), allowed: true, uid: "uid-1"},
		{name: "wrong kind", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "Service" }),
			code: http.StatusBadRequest, message: `expected a v1 Pod or a machine.flomesh.io/v1alpha1 VirtualMachine, got "/v1, Kind=Service"`, uid: "uid-1"},
		{name: "missing object", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }),
			code: http.StatusBadRequest, message: "admission request has no pod object", uid: "uid-1"},
		{name: "object not a pod", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":{"containers":"nope"}}`) }),
			code: http.StatusBadRequest, message: "decoding pod", uid: "uid-1"},
		{name: "no namespace", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) {
			r.Namespace = ""
			p := simplePod(nil)
			p.Namespace = ""
			r.Object.Raw = podJSON(p)
		}),
			code: http.StatusBadRequest, message: "admission request names no namespace", uid: "uid-1"},
		{name: "unknown namespace", body: reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "ghost" }),
			code: http.StatusInternalServerError, message: "reading namespace ghost", uid: "uid-1"},
		{name: "missing request", body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), code: http.StatusBadRequest},
		{name: "malformed JSON", body: []byte(`{"request":`), code: http.StatusBadRequest},
		// An empty body or another content type is refused before decoding,
		// with a plain HTTP status: reviewhttp's TestTransport.
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil)
			_, resp := f.post(t, tc.body, "application/json")
			if resp.Allowed != tc.allowed || (len(resp.Patch) > 0) != tc.patched {
				t.Fatalf("allowed=%v patch=%d bytes, want allowed=%v patched=%v; result %+v", resp.Allowed, len(resp.Patch), tc.allowed, tc.patched, resp.Result)
			}
			if resp.UID != tc.uid {
				t.Errorf("uid %q, want %q", resp.UID, tc.uid)
			}
			if !tc.allowed {
				if resp.Result == nil || resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.message) {
					t.Errorf("result %+v, want code %d message containing %q", resp.Result, tc.code, tc.message)
				}
			}
			if len(f.secrets) != tc.secrets {
				t.Errorf("%d Secrets created, want %d", len(f.secrets), tc.secrets)
			}
			if len(f.recorder.events) != tc.events {
				t.Errorf("%d events, want %d", len(f.recorder.events), tc.events)
			}
		})
	}
}

func ptrBool(b bool) *bool { return &b }

// A Secret create the namespace's ResourceQuota refuses is the tenant's to
// fix: a denial (400, result denied) with an Event on the pod's owner, not
// the injector's 500 that pages its operators; any other failure, an RBAC
// 403 included, stays a 500. TestQuotaLimitRangeAndLaterWebhooks shows the
// apiserver's real refusal.
func TestHandlerSecretFailuresDeny(t *testing.T) {
	const secret = "app/sidecar-bootstrap-config-00000000-0000-4000-8000-000000000001"
	quota := apierrors.NewForbidden(corev1.Resource("secrets"), "sidecar-bootstrap-config-00000000-0000-4000-8000-000000000001",
		errors.New("exceeded quota: q, requested: count/secrets=1, used: count/secrets=4, limited: count/secrets=4"))
	rbac := &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusForbidden, Reason: metav1.StatusReasonForbidden,
		Message: `secrets is forbidden: User "system:serviceaccount:fsm-system:fsm-webhooks" cannot create resource "secrets" in API group "" in the namespace "app"`}}
	for _, tc := range []struct {
		name      string
		issuerErr error
		createErr error
		code      int32
		events    int
		want      string
	}{
		{"issuer fails", &certs.ProviderError{Provider: "vault", Op: "issue", Err: errors.New("permission denied")}, nil, http.StatusInternalServerError, 0,
			"issuing bootstrap certificate for 00000000-0000-4000-8000-000000000001.sidecar.default.app.cluster.local: vault: issue: permission denied"},
		{"create fails", nil, errors.New("quota exceeded"), http.StatusInternalServerError, 0, "creating bootstrap Secret " + secret + ": quota exceeded"},
		{"RBAC refuses the create", nil, rbac, http.StatusInternalServerError, 0, "creating bootstrap Secret " + secret + ": " + rbac.Error()},
		{"the namespace's ResourceQuota refuses the create", nil, quota, http.StatusBadRequest, 1,
			"creating bootstrap Secret " + secret + `: secrets "sidecar-bootstrap-config-00000000-0000-4000-8000-000000000001" is forbidden: ` +
				"exceeded quota: q, requested: count/secrets=1, used: count/secrets=4, limited: count/secrets=4: " +
				"each meshed pod needs a bootstrap Secret in its namespace; raise the ResourceQuota's Secret count or delete Secrets no longer used"},
		{"a quota refusal wrapped", nil, fmt.Errorf("creating: %w", quota), http.StatusBadRequest, 1, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{err: tc.issuerErr}, tc.createErr)
			_, resp := f.post(t, reviewBody(t, nil), "application/json")
			if resp.Allowed || len(resp.Patch) > 0 || (tc.want != "" && resp.Result.Message != tc.want) || resp.UID != "uid-1" {
				t.Fatalf("got allowed=%v uid=%q message %q, want denial %q", resp.Allowed, resp.UID, resp.Result.Message, tc.want)
			}
			if resp.Result.Code != tc.code || len(f.recorder.events) != tc.events {
				t.Fatalf("code %d, %d events; want %d, %d", resp.Result.Code, len(f.recorder.events), tc.code, tc.events)
			}
		})
	}
}

// TestHandlerMetrics: served as serve does, an injection counts as patched,
// a skip as allowed and a refusal as denied in the shared request metrics.
func TestHandlerMetrics(t *testing.T) {
	f := newHandlerFixture(t, stubIssuer{}, nil)
	f.server.Named("injector-metrics-test")
	count := func(result string) float64 { return reviewhttptest.Requests(t, "injector-metrics-test", result) }
	before := map[string]float64{}
	for _, r := range []string{reviewhttp.ResultPatched, reviewhttp.ResultAllowed, reviewhttp.ResultDenied} {
		before[r] = count(r)
	}
	f.post(t, reviewBody(t, nil), "application/json")
	f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "other" }), "application/json")
	f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
		r.Object.Raw, _ = json.Marshal(simplePod(map[string]string{InboundPortExclusionAnnotation: "x"}))
	}), "application/json")
	for result, was := range before {
		if now := count(result); now != was+1 {
			t.Errorf("%s counter went %v -> %v, want +1", result, was, now)
		}
	}
}

// TestHandlerConcurrent admits many pods at once; every one gets its own uuid
// and Secret (run with -race).
func TestHandlerConcurrent(t *testing.T) {
	f := newHandlerFixture(t, stubIssuer{}, nil)
	var mu sync.Mutex
	n := 0
	f.h.opts.NewUUID = func() string {
		mu.Lock()
		defer mu.Unlock()
		n++
		return strings.Repeat("0", 8) + "-" + string(rune('a'+n%26)) + strings.Repeat("0", 3) + "-" + itoa(n)
	}
	body := reviewBody(t, nil)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			_, resp := f.post(t, body, "application/json")
			if !resp.Allowed || len(resp.Patch) == 0 {
				t.Errorf("not injected: %+v", resp.Result)
			}
		})
	}
	wg.Wait()
	seen := map[string]bool{}
	for _, s := range f.secrets {
		seen[s.Name] = true
	}
	if len(seen) != 64 {
		t.Fatalf("%d distinct Secrets for 64 admissions", len(seen))
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// TestPatchKeepsUnknownFields applies the patch to the raw pod as the
// apiserver does: fields our Go types do not know must survive.
func TestPatchKeepsUnknownFields(t *testing.T) {
	raw := []byte(`{"metadata":{"name":"p","namespace":"app","futureMeta":1},"spec":{"futureSpec":{"a":1},"containers":[{"name":"app","image":"app","futureContainerField":"x"}]}}`)
	var pod corev1.Pod
	if err := json.Unmarshal(raw, &pod); err != nil {
		t.Fatal(err)
	}
	mut, err := mutateWith(t, &pod, nil, DefaultSettings(), testMesh)
	if err != nil {
		t.Fatal(err)
	}
	ops, err := CreatePatch(&pod, mut.Pod)
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Operation == "remove" {
			t.Errorf("unexpected remove op %s", op.Path)
		}
	}
	pb, _ := json.Marshal(ops)
	p, err := jsonpatchapply.DecodePatch(pb)
	if err != nil {
		t.Fatal(err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		t.Fatalf("patch does not apply to the raw pod: %v\n%s", err, pb)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	spec := got["spec"].(map[string]any)
	containers := spec["containers"].([]any)
	if spec["futureSpec"] == nil || got["metadata"].(map[string]any)["futureMeta"] == nil {
		t.Errorf("unknown pod fields lost: %s", out)
	}
	if containers[0].(map[string]any)["name"] != "sidecar" || containers[1].(map[string]any)["futureContainerField"] != "x" {
		t.Errorf("containers wrong after patch: %s", out)
	}
}

// TestCreatePatchFallback covers container lists that are not pure
// insertions (Mutate never makes them, but CreatePatch must stay correct).
func TestCreatePatchFallback(t *testing.T) {
	orig := simplePod(nil)
	orig.Spec.Containers = append(orig.Spec.Containers, corev1.Container{Name: "b", Image: "b"})
	mut := orig.DeepCopy()
	mut.Spec.Containers = []corev1.Container{{Name: "b", Image: "b2"}}
	ops, err := CreatePatch(orig, mut)
	if err != nil {
		t.Fatal(err)
	}
	assertPatchApplies(t, orig, mut, ops)
}

// TestHandlerAlreadyInjected tells our own reinvocation (pod not stored, its
// Secret owned by no pod and naming the pod's identity) from a copy of an
// injected pod (the source stored, or its Secret owned by the source pod,
// gone, or naming another identity).
func TestHandlerAlreadyInjected(t *testing.T) {
	const oldID = "0a0a0a0a-0000-4000-8000-000000000000"
	injectedPod := func() *corev1.Pod {
		mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: oldID})
		if err != nil {
			t.Fatal(err)
		}
		return mut.Pod
	}
	// The Secret's bootstrap config names the identity it was made for.
	secretFor := func(owned bool, serviceAccount string) *corev1.Secret {
		boot, err := json.Marshal(BootstrapConfig{NodeID: CommonName(oldID, serviceAccount, "app", testMesh.TrustDomain)})
		if err != nil {
			t.Fatal(err)
		}
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: BootstrapSecretName(oldID), Namespace: "app", CreationTimestamp: metav1.Now()}, Data: map[string][]byte{BootstrapConfigKey: boot}}
		if owned {
			s.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "source", UID: "source-uid"}}
		}
		return s
	}
	secret := func(owned bool) *corev1.Secret { return secretFor(owned, injectedPod().Spec.ServiceAccountName) }
	stale := func(s *corev1.Secret) *corev1.Secret {
		s.CreationTimestamp = metav1.NewTime(time.Now().Add(-DefaultOrphanGracePeriod - time.Second))
		return s
	}
	source := func(ns string) *corev1.Pod {
		p := injectedPod()
		p.Name, p.Namespace = "source", ns
		return p
	}
	for _, tc := range []struct {
		name     string
		objs     []client.Object
		dryRun   bool
		reinject bool
	}{
		{name: "reinvocation: Secret exists, no owner", objs: []client.Object{secret(false)}},
		{name: "dry-run reinvocation", dryRun: true},
		{name: "dry run of a copy of a stored pod: the new identity, no Secret", objs: []client.Object{source("app")}, dryRun: true, reinject: true},
		{name: "dry run of a copy of a pod stored elsewhere", objs: []client.Object{source("other")}, dryRun: true},
		{name: "copy of a running pod: Secret owned", objs: []client.Object{secret(true)}, reinject: true},
		{name: "copy whose Secret is gone", reinject: true},
		// The Secret of a pod just deleted, not cleaned up yet.
		{name: "copy as another ServiceAccount: Secret owned by no pod names another identity", objs: []client.Object{secretFor(false, "other")}, reinject: true},
		// kubectl replace --force: the source deleted and gone from the
		// cache, its Secret not cleaned up yet.
		{name: "copy of a pod deleted since: Secret owned by no pod, older than any admission", objs: []client.Object{stale(secret(false))}, reinject: true},
		{name: "Secret owned by no pod without a bootstrap config", objs: []client.Object{&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: BootstrapSecretName(oldID), Namespace: "app"}}}, reinject: true},
		// This injector writes no owner reference: only the stored source
		// tells the copy apart.
		{name: "copy of a stored pod: Secret owned by no pod", objs: []client.Object{secret(false), source("app")}, reinject: true},
		{name: "copy of a stored pod, Secret owned", objs: []client.Object{secret(true), source("app")}, reinject: true},
		{name: "a pod with the uuid in another namespace is not the source", objs: []client.Object{secret(false), source("other")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil, tc.objs...)
			_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				r.Object.Raw, _ = json.Marshal(injectedPod())
				r.DryRun = &tc.dryRun
			}), "application/json")
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if !tc.reinject {
				if len(resp.Patch) != 0 || len(f.secrets) != 0 {
					t.Fatalf("reinvocation changed the pod (%s) or created %d Secrets", resp.Patch, len(f.secrets))
				}
				return
			}
			var newID string
			if tc.dryRun {
				if len(f.secrets) != 0 {
					t.Fatalf("dry run created %d Secrets", len(f.secrets))
				}
				newID = patchedUUID(t, resp.Patch)
			} else {
				if len(f.secrets) != 1 || f.secrets[0].Name == BootstrapSecretName(oldID) {
					t.Fatalf("copy did not get a new Secret: %v", f.secrets)
				}
				newID = f.secrets[0].Labels[ProxyUUIDLabel]
			}
			if newID == "" || newID == oldID {
				t.Fatalf("copy's uuid %q, source's %q: want a new one", newID, oldID)
			}
			for _, want := range []string{`"value":"` + newID + `"`, BootstrapSecretName(newID), "/repo/fsm-sidecar/" + newID + ".sidecar.default.app/"} {
				if !strings.Contains(string(resp.Patch), want) {
					t.Errorf("patch lacks %s: %s", want, resp.Patch)
				}
			}
			if strings.Contains(string(resp.Patch), `"op":"add","path":"/spec/containers/`) {
				t.Errorf("copy got a second sidecar: %s", resp.Patch)
			}
		})
	}
}

// TestHandlerRestoredSecretNotReinvocation: Velero restores a namespace's
// bootstrap Secrets (metadata reset: no owner, a new creationTimestamp),
// then its pods, which arrive already injected. A Secret whose certificate
// the mesh's roots did not sign (a backup from before a completed root
// rotation, or from another cluster) is not one this admission wrote: the pod
// gets a new identity and Secret, as a copy does. Taken for our reinvocation,
// the pod ran on a certificate of a root the mesh no longer trusts, which the
// trust controller never re-issues. A restored Secret the mesh's root signed
// keeps its pod's identity.
func TestHandlerRestoredSecretNotReinvocation(t *testing.T) {
	const oldID = "0a0a0a0a-0000-4000-8000-000000000000"
	ca := certstest.MustNew(t, certstest.Options{})
	otherRoot := certstest.MustNew(t, certstest.Options{})
	pod, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: oldID})
	if err != nil {
		t.Fatal(err)
	}
	restored := func(issuer certs.Issuer) *corev1.Secret {
		cert, err := issuer.Issue(t.Context(), certRequest(pod.CommonName, certs.ECDSAP256, time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		s, err := BootstrapSecret("app", "fsm", oldID, cert, pod.Bootstrap)
		if err != nil {
			t.Fatal(err)
		}
		s.CreationTimestamp = metav1.Now()
		s.Labels["velero.io/restore-name"] = "r1"
		return s
	}
	for _, tc := range []struct {
		name     string
		signer   certs.Issuer
		reinject bool
	}{
		{"signed by the mesh's root: the pod keeps its identity", ca, false},
		{"signed by a root the mesh does not trust: a new identity", otherRoot, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, ca, nil, restored(tc.signer))
			_, resp := f.post(t, reviewBody(t, func(r *admissionv1.AdmissionRequest) {
				r.Object.Raw, _ = json.Marshal(pod.Pod)
			}), "application/json")
			if !resp.Allowed {
				t.Fatalf("denied: %+v", resp.Result)
			}
			if !tc.reinject {
				if len(resp.Patch) != 0 || len(f.secrets) != 0 {
					t.Fatalf("pod changed (%s) or %d Secrets created", resp.Patch, len(f.secrets))
				}
				return
			}
			if len(f.secrets) != 1 || f.secrets[0].Labels[ProxyUUIDLabel] == oldID {
				t.Fatalf("restored pod kept uuid %s and its Secret's certificate of a root the mesh does not trust (patch %q, %d Secrets created)",
					oldID, resp.Patch, len(f.secrets))
			}
			if chain, err := certs.ParseCertsPEM(f.secrets[0].Data[RepoCertKey]); err != nil || chain[0].CheckSignatureFrom(ca.Active()) != nil {
				t.Errorf("the new Secret's certificate is not the mesh root's: %v", err)
			}
		})
	}
}

// patchedUUID is the value the JSON patch gives the proxy uuid label.
func patchedUUID(t *testing.T, patch []byte) string {
	t.Helper()
	var ops []struct {
		Path  string `json:"path"`
		Value any    `json:"value"`
	}
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatalf("patch %s: %v", patch, err)
	}
	path := "/metadata/labels/" + strings.ReplaceAll(strings.ReplaceAll(ProxyUUIDLabel, "~", "~0"), "/", "~1")
	for _, op := range ops {
		if op.Path == path {
			s, _ := op.Value.(string)
			return s
		}
	}
	t.Fatalf("patch sets no %s label: %s", ProxyUUIDLabel, patch)
	return ""
}

// TestHandlerLocalDNS: with spec.sidecar.localDNSProxy the pod's DNS server
// is the controller Service's ClusterIP, read through Options.Services;
// without the Service the pod is refused naming it, and no Secret is created.
func TestHandlerLocalDNS(t *testing.T) {
	s := DefaultSettings()
	s.LocalDNSProxy = true
	for _, tc := range []struct {
		name    string
		objs    []client.Object
		allowed bool
		want    string
	}{
		{"Service exists", []client.Object{testControllerService()}, true, `"nameservers":["10.96.200.10"]`},
		{"Service missing", nil, false,
			"MeshConfig spec.sidecar.localDNSProxy.enable is true, but Service fsm-system/fsm-controller does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil, tc.objs...)
			f.h.opts.MeshConfig = StaticSettings(s)
			_, resp := f.post(t, reviewBody(t, nil), "application/json")
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v: %+v", resp.Allowed, tc.allowed, resp.Result)
			}
			got := string(resp.Patch)
			if !tc.allowed {
				if resp.Result.Code != http.StatusBadRequest || resp.Result.Reason != "" || len(f.secrets) != 0 {
					t.Errorf("code %d reason %q, %d Secrets; want FSM's 400 without a reason and none", resp.Result.Code, resp.Result.Reason, len(f.secrets))
				}
				got = resp.Result.Message
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("%s lacks %s", got, tc.want)
			}
		})
	}
}

// TestHandlerTimesItsParts: the work histogram excludes the Secret's API
// write, which has its own histogram; a skipped pod writes nothing.
func TestHandlerTimesItsParts(t *testing.T) {
	const write = time.Second // far above any handler's own work
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(
		monitoredNamespace("app", nil), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "other"}}).Build()
	writer := interceptor.NewClient(reader, interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			time.Sleep(write)
			return nil
		},
	})
	h, err := NewHandler(Options{
		Client: writer, Namespaces: reader, Issuer: stubIssuer{},
		MeshName: "fsm", FSMNamespace: "fsm-system",
		SidecarImage: testMesh.SidecarImage, InitImage: testMesh.InitImage, HealthcheckImage: testMesh.HealthcheckImage,
		NewUUID: seqUUID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	read := func(hist prometheus.Histogram) (count uint64, sum float64) {
		var m dto.Metric
		if err := hist.Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
	}
	admit := func(ns string) {
		raw, _ := json.Marshal(simplePod(nil))
		resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "uid", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: ns,
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		}})
		if !resp.Allowed {
			t.Fatalf("pod in %s refused: %v", ns, resp.Result)
		}
	}

	workN, workSum := read(handlerWork)
	writeN, writeSum := read(handlerSecretWrite)
	admit("app")
	workN2, workSum2 := read(handlerWork)
	writeN2, writeSum2 := read(handlerSecretWrite)
	if workN2 != workN+1 || writeN2 != writeN+1 {
		t.Fatalf("an injection observed work %d and write %d times, want 1 each", workN2-workN, writeN2-writeN)
	}
	if got := writeSum2 - writeSum; got < write.Seconds() {
		t.Errorf("Secret write observed as %.3f s, the write took at least %v", got, write)
	}
	if got := workSum2 - workSum; got >= write.Seconds() {
		t.Errorf("own work observed as %.3f s: the %v Secret write is counted in it", got, write)
	}

	admit("other") // not monitored: skipped, nothing written
	workN3, _ := read(handlerWork)
	writeN3, _ := read(handlerSecretWrite)
	if workN3 != workN2+1 || writeN3 != writeN2 {
		t.Errorf("a skipped pod observed work %d and write %d times, want 1 and 0", workN3-workN2, writeN3-writeN2)
	}
}

// TestHandlerMaxInFlight: with MaxInFlight admissions being handled, one
// more waits (maxQueueWait) and is then refused with 429 and Retry-After;
// one that waits while an admission finishes takes its slot.
func TestHandlerMaxInFlight(t *testing.T) {
	reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("app", nil)).Build()
	entered, release := make(chan struct{}), make(chan struct{})
	writer := interceptor.NewClient(reader, interceptor.Funcs{
		Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
			entered <- struct{}{}
			<-release
			return nil
		},
	})
	h, err := NewHandler(Options{
		Client: writer, Namespaces: reader, Issuer: stubIssuer{}, MaxInFlight: 2,
		MeshName: "fsm", FSMNamespace: "fsm-system",
		SidecarImage: testMesh.SidecarImage, InitImage: testMesh.InitImage, HealthcheckImage: testMesh.HealthcheckImage,
		NewUUID: seqUUID(),
	})
	if err != nil {
		t.Fatal(err)
	}
	admit := func() admission.Response {
		raw, _ := json.Marshal(simplePod(nil))
		return h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "uid", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"}, Namespace: "app",
			Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw},
		}})
	}
	results := make(chan admission.Response, 2)
	for range 2 {
		go func() { results <- admit() }()
		<-entered // both hold their token, blocked in the Secret write
	}
	before := testutil.ToFloat64(overloaded)
	resp := admit()
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusTooManyRequests ||
		resp.Result.Details == nil || resp.Result.Details.RetryAfterSeconds < 1 || !strings.Contains(resp.Result.Message, "--injector-max-in-flight") {
		t.Fatalf("third admission with 2 in flight: %+v, want 429 with Retry-After naming --injector-max-in-flight", resp.Result)
	}
	if got := testutil.ToFloat64(overloaded) - before; got != 1 {
		t.Errorf("fsm_webhooks_injector_overloaded_total went up by %v, want 1", got)
	}
	// One that waits gets the slot an admission in flight frees. It waits
	// longer than this goroutine may be held up before the release: with
	// the 1 s wait, a release later than that found it refused, and the
	// test waited for ever for it to enter.
	h.queueWait = time.Hour
	go func() { results <- admit() }()
	time.Sleep(100 * time.Millisecond) // it waits by then, unless starved: it then takes the freed slot at once
	release <- struct{}{}
	<-entered
	if r := <-results; !r.Allowed {
		t.Fatalf("an admission in flight was refused: %+v", r.Result)
	}
	close(release)
	for range 2 {
		if r := <-results; !r.Allowed {
			t.Fatalf("admission refused: %+v", r.Result)
		}
	}
	if _, err := NewHandler(Options{Client: writer, Namespaces: reader, Issuer: stubIssuer{}, MaxInFlight: -1, MeshName: "fsm", FSMNamespace: "fsm-system"}); err == nil || !strings.Contains(err.Error(), "MaxInFlight -1") {
		t.Errorf("MaxInFlight -1: err %v, want one naming it", err)
	}
}

// TestHandlerHandoffOnClientThrottling: with the admission writer's
// hand-off, a Secret create client-go's own rate limiter refuses at once
// (its wait would outlast the budget, which has not run out yet) is handed
// to the writer controller like a create over budget, and the pod is
// admitted; an answer from the API server, or any other failure, is still
// the admission's error. TestE2E ("…client-side throttling…") shows
// client-go's real refusal.
func TestHandlerHandoffOnClientThrottling(t *testing.T) {
	throttled := fmt.Errorf("client rate limiter Wait returned an error: %w", errors.New("rate: Wait(n=1) would exceed context deadline"))
	for _, tc := range []struct {
		name      string
		createErr error
		handedOff bool
	}{
		{"client-go rate limiter refuses", throttled, true},
		{"client-go rate limiter refuses, wrapped", fmt.Errorf("creating: %w", throttled), true},
		{"API server refuses (RBAC)", apierrors.NewForbidden(corev1.Resource("secrets"), "", errors.New(`User "x" cannot create resource "secrets"`)), false},
		{"API server error quoting the text", apierrors.NewInternalError(throttled), false},
		{"API server throttles (429)", apierrors.NewTooManyRequests("slow down", 1), false},
		{"connection refused", errors.New("dial tcp 10.96.0.1:443: connect: connection refused"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reader := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("app", nil)).Build()
			writer := interceptor.NewClient(reader, interceptor.Funcs{
				Create: func(context.Context, client.WithWatch, client.Object, ...client.CreateOption) error {
					return tc.createErr
				},
			})
			pending := NewPendingSecrets(0)
			h, err := NewHandler(Options{
				Client: writer, Namespaces: reader, Issuer: stubIssuer{}, MeshName: "fsm", FSMNamespace: "fsm-system",
				SidecarImage: testMesh.SidecarImage, InitImage: testMesh.InitImage, HealthcheckImage: testMesh.HealthcheckImage,
				Pending: pending, Handoff: SecretHandoff{Budget: time.Hour}, NewUUID: seqUUID(),
			})
			if err != nil {
				t.Fatal(err)
			}
			_, resp := (&handlerFixture{server: reviewhttp.NewAdmission(h)}).post(t, reviewBody(t, nil), "application/json")
			if got := resp.Allowed && len(resp.Patch) > 0 && pending.Len() == 1; got != tc.handedOff {
				t.Fatalf("allowed=%v patch %d B, records handed off %d, message %q; want handed off = %v",
					resp.Allowed, len(resp.Patch), pending.Len(), resp.Result.Message, tc.handedOff)
			}
			if !tc.handedOff && (resp.Allowed || resp.Result.Code != http.StatusInternalServerError || pending.Len() != 0) {
				t.Fatalf("allowed=%v code %d, records %d: want the create's error as a 500 and nothing handed off", resp.Allowed, resp.Result.Code, pending.Len())
			}
		})
	}
}

// TestHandlerNamespaceNotYetCached: the apiserver calls the webhook for a
// namespace its namespaceSelector matched, reading the namespace live when its
// own lister misses (k8s.io/apiserver .../webhook/predicates/namespace:
// GetNamespaceLabels); the injector's informer cache may lag it (`kubectl
// apply` of a Namespace and a Pod; `fsm namespace add`, which labels and
// annotates the namespace in one patch, then a pod at once). A cache
// NotFound is confirmed with one live read through Options.Client before the
// object is refused, and so is a cached namespace whose labels contradict the
// namespaceSelector the apiserver called under (not monitored by the mesh,
// or ignored): admitted on the cache's word, the pod would run unmeshed for
// its lifetime. Otherwise a cached namespace is never read live.
func TestHandlerNamespaceNotYetCached(t *testing.T) {
	pod := func(t *testing.T) []byte { return reviewBody(t, nil) }
	vm := func(t *testing.T) []byte { return vmReview(t, nil) }
	unlabelled := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}
	ignored := monitoredNamespace("app", nil)
	ignored.Labels[fsmnames.IgnoreLabel] = "true"
	notEnabled := monitoredNamespace("app", nil)
	delete(notEnabled.Annotations, SidecarInjectionAnnotation)
	for _, tc := range []struct {
		name         string
		cached, live *corev1.Namespace // namespace app in the cache, in the API server (nil: none)
		body         func(*testing.T) []byte
		secrets      int  // 0 and no message: patched without a Secret
		skipped      bool // allowed unchanged
		liveReads    int
		message      string // a 500 with this message
	}{
		{name: "pod, cached: no live read", cached: monitoredNamespace("app", nil), live: monitoredNamespace("app", nil), body: pod, secrets: 1},
		{name: "pod, not cached yet: read live", live: monitoredNamespace("app", nil), body: pod, secrets: 1, liveReads: 1},
		{name: "VirtualMachine, not cached yet: read live", live: monitoredNamespace("app", nil), body: vm, liveReads: 1},
		{name: "pod, namespace nowhere", body: pod, liveReads: 1,
			message: `reading namespace app: not in the informer cache; from the API server: namespaces "app" not found`},
		{name: "pod, cached before fsm namespace add: read live", cached: unlabelled, live: monitoredNamespace("app", nil), body: pod, secrets: 1, liveReads: 1},
		{name: "VirtualMachine, cached before fsm namespace add: read live", cached: unlabelled, live: monitoredNamespace("app", nil), body: vm, liveReads: 1},
		{name: "pod, cached with the ignore label since removed: read live", cached: ignored, live: monitoredNamespace("app", nil), body: pod, secrets: 1, liveReads: 1},
		{name: "pod, not monitored in the API server either (not the apiserver's call)", cached: unlabelled, live: unlabelled, body: pod, skipped: true, liveReads: 1},
		{name: "pod, monitored but not enabled: the cache decides", cached: notEnabled, live: monitoredNamespace("app", nil), body: pod, skipped: true},
		{name: "pod, cached unlabelled, deleted since: skipped", cached: unlabelled, body: pod, skipped: true, liveReads: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			builder := func(ns *corev1.Namespace) client.WithWatch {
				b := fake.NewClientBuilder().WithScheme(testScheme(t))
				if ns != nil {
					b = b.WithObjects(ns.DeepCopy())
				}
				return b.Build()
			}
			var liveReads int
			var created []*corev1.Secret
			direct := interceptor.NewClient(builder(tc.live), interceptor.Funcs{
				Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
					if _, ok := obj.(*corev1.Namespace); ok {
						liveReads++
					}
					return c.Get(ctx, key, obj, opts...)
				},
				Create: func(_ context.Context, _ client.WithWatch, obj client.Object, _ ...client.CreateOption) error {
					created = append(created, obj.(*corev1.Secret))
					return nil
				},
			})
			h, err := NewHandler(Options{
				Client: direct, Namespaces: builder(tc.cached), Issuer: stubIssuer{},
				MeshName: "fsm", FSMNamespace: "fsm-system", NewUUID: seqUUID(),
			})
			if err != nil {
				t.Fatal(err)
			}
			f := &handlerFixture{h: h, server: reviewhttp.NewAdmission(h), recorder: &fakeRecorder{}}
			counted := testutil.ToFloat64(namespacesReadLive)
			_, resp := f.post(t, tc.body(t), "application/json")
			switch {
			case tc.message != "":
				if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusInternalServerError || resp.Result.Message != tc.message {
					t.Fatalf("allowed=%v result %+v, want a 500 %q", resp.Allowed, resp.Result, tc.message)
				}
			case tc.skipped:
				if !resp.Allowed || len(resp.Patch) != 0 {
					t.Fatalf("allowed=%v patch=%d bytes, result %+v; want it allowed unchanged", resp.Allowed, len(resp.Patch), resp.Result)
				}
			case !resp.Allowed || len(resp.Patch) == 0:
				t.Fatalf("allowed=%v patch=%d bytes, result %+v; want it injected", resp.Allowed, len(resp.Patch), resp.Result)
			}
			if len(created) != tc.secrets {
				t.Errorf("bootstrap Secrets created: %d, want %d", len(created), tc.secrets)
			}
			if liveReads != tc.liveReads {
				t.Errorf("namespace read from the API server %d times, want %d", liveReads, tc.liveReads)
			}
			if got := testutil.ToFloat64(namespacesReadLive) - counted; got != float64(tc.liveReads) {
				t.Errorf("%s went up by %v, want %d", "fsm_webhooks_injector_namespace_live_reads_total", got, tc.liveReads)
			}
		})
	}
}

// TestHandoffBudget: an admission waits for its Secret create the
// configured budget, but never past half of the time it has left, so a
// create over it is still handed off before the admission's deadline
// (timeoutSeconds 1 leaves the handler 0.75 s; a budget set long; a slow CA).
func TestHandoffBudget(t *testing.T) {
	for _, tc := range []struct {
		name         string
		budget, left time.Duration
		want         time.Duration
	}{
		{"default budget, default deadline", time.Second, 15 * time.Second, time.Second},
		{"budget just under half the time left", 7 * time.Second, 15 * time.Second, 7 * time.Second},
		{"budget past the deadline: half the time left", 30 * time.Second, 15 * time.Second, 7500 * time.Millisecond},
		{"timeoutSeconds 1: 0.75 s left", time.Second, 750 * time.Millisecond, 375 * time.Millisecond},
		{"a slow CA used up most of the time", time.Second, 600 * time.Millisecond, 300 * time.Millisecond},
		{"no time left", time.Second, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := handoffBudget(tc.budget, tc.left); got != tc.want {
				t.Errorf("handoffBudget(%s, %s) = %s, want %s", tc.budget, tc.left, got, tc.want)
			}
		})
	}
}
