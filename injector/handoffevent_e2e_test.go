package injector_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestHandedOffPodToldWhyItsSecretIsMissing: with the admission writer, a
// pod whose admission found the hand-off slots taken is admitted and its
// Secret left to the writer controller. When the mesh CA then does not
// answer (cert-manager without its approver: nobody approves the
// CertificateRequest), the pod waits in ContainerCreating ("secret not
// found") while the writer retries; the cause, naming the Issuer, must be
// on the pod as a Warning Event (kubectl describe pod), not only in the
// server's log.
func TestHandedOffPodToldWhyItsSecretIsMissing(t *testing.T) {
	ctx, e, issuer, servingCA, _ := unapprovedCertManager(t)
	const mesh = "handoff-hang"
	// One slot: while one admission waits on the CA, the others hand off.
	h := e.writerReplica(t, issuer, mesh, replicaWriter{
		pending: injector.NewPendingSecrets(time.Minute), writer: injector.SecretWriterAdmission,
		handoff: injector.SecretHandoff{InFlight: 1, Budget: 10 * time.Second}, events: true,
	})
	e.serveMesh(ctx, t, servingCA, mesh, mesh, h)

	var wg sync.WaitGroup
	created := make(chan string, 4)
	for _, name := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := e.cl.Create(ctx, pod(name, mesh)); err == nil {
				created <- name
			} else {
				t.Logf("pod %s refused: %v", name, err)
			}
		}()
	}
	wg.Wait()
	close(created)
	var admitted []string
	for name := range created {
		admitted = append(admitted, name)
	}
	if len(admitted) == 0 {
		t.Fatal("no pod handed off: every admission waited on the CA (the hand-off this test is about did not happen)")
	}
	t.Logf("admitted without a Secret (handed off): %v", admitted)
	for _, name := range admitted {
		eventually(t, 90*time.Second, "a Warning Event on pod "+name+" naming the Issuer", func() (bool, error) {
			l := &eventsv1.EventList{}
			if err := e.cl.List(ctx, l, client.InNamespace(mesh)); err != nil {
				return false, err
			}
			for _, ev := range l.Items {
				if ev.Regarding.Kind == "Pod" && ev.Regarding.Name == name && ev.Type == corev1.EventTypeWarning &&
					ev.Reason == injector.EventBootstrapSecretNotWritten && strings.Contains(ev.Note, `Issuer "fsm-ca"`) {
					t.Logf("pod %s: %s: %s", name, ev.Reason, ev.Note)
					return true, nil
				}
			}
			return false, nil
		})
	}
}
