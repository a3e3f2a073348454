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
			ctx := context.Background()
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("evil", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: tc.id})
			if err != nil {
				t.Fatal(err)
			}
			pod := mut.Pod.DeepCopy()
			pod.Namespace, pod.Name, pod.UID = "evil", "p", "pod-uid"
			cl := fake.NewClientBuilder().WithScheme(testScheme(t)).WithObjects(monitoredNamespace("evil", nil), pod).
				WithIndex(metadataOf(podKind), podUUIDIndex, func(o client.Object) []string { return []string{o.GetLabels()[ProxyUUIDLabel]} }).
				Build()
			issuer := &recordingIssuer{}
			h, err := NewHandler(Options{Client: cl, Namespaces: cl, Issuer: issuer, MeshName: "fsm", FSMNamespace: "fsm-system"})
			if err != nil {
				t.Fatal(err)
			}
			w := &secretWriter{cache: cl, h: h, repairDelay: DefaultRepairDelay, log: testr.New(t), now: func() time.Time { return time.Now() }}
			key := types.NamespacedName{Namespace: "evil", Name: BootstrapSecretName(tc.id)}
			if _, err := w.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatal(err)
			}
			var secrets corev1.SecretList
			if err := cl.List(ctx, &secrets, client.InNamespace("evil")); err != nil {
				t.Fatal(err)
			}
			if len(issuer.cns) != tc.wantCerts || len(secrets.Items) != tc.wantCerts {
				t.Fatalf("signed %d certificate(s) %q and wrote %d Secret(s) for uuid label %q; want %d",
					len(issuer.cns), strings.Join(issuer.cns, ", "), len(secrets.Items), tc.id, tc.wantCerts)
			}
		})
	}
}
