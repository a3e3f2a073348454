package injector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// recordingIssuer is stubIssuer recording the CNs it signs.
type recordingIssuer struct {
	stubIssuer
	cns []string
}

func (r *recordingIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	r.cns = append(r.cns, req.CommonName)
	return r.stubIssuer.Issue(ctx, req)
}

// TestRepairRefusesUUIDLabelWithCNDelimiter: the writer's repair signs a
// certificate for the uuid a stored pod's fsm-proxy-uuid label carries. The
// label is the pod author's to write (a pod created with injection off, or
// where our webhook does not run, keeps it), and label values may hold dots,
// the CN's delimiter: a uuid "<uuid>.sidecar.<sa>.<ns>" made the mesh CA sign
// <uuid>.sidecar.<sa>.<ns>.sidecar.<own sa>.<own ns>.<trust domain>, whose
// first four labels (what FSM reads a sidecar CN by) name another
// namespace's identity. Such a pod is no pod an injector identified: nothing
// is signed, nothing written. A plain uuid is still repaired.
func TestRepairRefusesUUIDLabelWithCNDelimiter(t *testing.T) {
	for _, tc := range []struct {
		name      string
		id        string
		wantCerts int
	}{
		{name: "injector's uuid: repaired", id: "00000000-0000-4000-8000-000000000001", wantCerts: 1},
		{name: "uuid naming another namespace's identity", id: "00000000-0000-4000-8000-000000000002.sidecar.default.bookstore"},
		{name: "any dotted uuid", id: "u1.x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("evil", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			pod := mut.Pod.DeepCopy()
			pod.Namespace, pod.Name, pod.UID = "evil", "p", "pod-uid"
			cns, secrets, _ := repairOnce(t, pod, tc.id)
			if len(cns) != tc.wantCerts || len(secrets) != tc.wantCerts {
				t.Fatalf("signed %d certificate(s) %q and wrote %d Secret(s) for uuid label %q; want %d",
					len(cns), strings.Join(cns, ", "), len(secrets), tc.id, tc.wantCerts)
			}
		})
	}
}

// repairOnce runs the writer's repair once for the bootstrap Secret of uuid
// id of the stored injected pod (in a fake cache holding it and its monitored
// namespace), and returns the CNs signed, the Secrets in the pod's namespace
// after it, and the reconcile's result.
func repairOnce(t *testing.T, pod *corev1.Pod, id string) ([]string, []corev1.Secret, reconcile.Result) {
	t.Helper()
	ctx := context.Background()
	cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace(pod.Namespace, nil), pod).
		WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
		Build()
	issuer := &recordingIssuer{}
	h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system"})
	if err != nil {
		t.Fatal(err)
	}
	w := &secretWriter{cache: cl, h: h, repairDelay: DefaultRepairDelay, log: testr.New(t), now: time.Now}
	res, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: pod.Namespace, Name: BootstrapSecretName(id)}})
	if err != nil {
		t.Fatalf("reconcile: %v", err)
	}
	var secrets corev1.SecretList
	if err := cl.List(ctx, &secrets, client.InNamespace(pod.Namespace)); err != nil {
		t.Fatal(err)
	}
	return issuer.cns, secrets.Items, res
}
