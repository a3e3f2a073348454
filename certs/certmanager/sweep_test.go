package certmanager

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// noDelete fails every DELETE of a CertificateRequest: the process is gone
// before its deferred clean-up runs (SIGKILL, OOM kill mid-wait).
type noDelete struct{ rt http.RoundTripper }

func (n noDelete) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodDelete && strings.Contains(req.URL.Path, "/certificaterequests/") {
		return nil, errors.New("process killed")
	}
	return n.rt.RoundTrip(req)
}

// TestSweepDeletesRequestsLeftBehind: a CertificateRequest whose creator
// died while waiting for it was never deleted by anyone (a standalone
// request has no owner to garbage-collect it), so every SIGKILL or OOM kill
// of a replica during an admission burst left requests, each holding a
// signed certificate, in the fsm namespace for ever. Ours are labelled, and
// Sweep deletes those older than SweepAge (no wait of ours lasts that
// long) and nothing else: not FSM's or the user's (unlabelled), not a young
// one some replica may still wait for.
func TestSweepDeletesRequestsLeftBehind(t *testing.T) {
	h := startCMEnv(t, 24*time.Hour, false)
	ctx := context.Background()
	cfg := rest.CopyConfig(h.env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return noDelete{rt} })
	dying := h.issuer(t, h.manual, DefaultIssuerName, cmclient.NewForConfigOrDie(cfg))
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := dying.Issue(wctx, certs.Request{CommonName: "p1.sidecar.sa.bookstore.cluster.local", Validity: time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256})
	if err == nil {
		t.Fatal("Issue succeeded with nobody approving")
	}
	t.Logf("Issue: %v", err)
	// FSM's controller (or the user) has requests there too.
	theirs, err := h.cm.CertmanagerV1().CertificateRequests(h.manual).Create(ctx, &cmapi.CertificateRequest{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "fsm-"},
		Spec:       cmapi.CertificateRequestSpec{Request: []byte("csr"), IssuerRef: dying.issuerRef()},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		list, err := h.cm.CertmanagerV1().CertificateRequests(h.manual).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, cr := range list.Items {
			out = append(out, cr.Name)
		}
		return out
	}
	if got := names(); len(got) != 2 {
		t.Fatalf("requests before the sweep: %v, want the one left behind and FSM's", got)
	}

	sweeper := h.issuer(t, h.manual, DefaultIssuerName, nil)
	// Young: a replica may still wait for it.
	if n, err := sweeper.Sweep(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Sweep of young requests: deleted %d, %v; want none", n, err)
	}
	n, err := sweeper.Sweep(ctx, time.Now().Add(SweepAge+time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if got := names(); n != 1 || len(got) != 1 || got[0] != theirs.Name {
		t.Errorf("after the sweep: deleted %d, left %v; want only FSM's %s left", n, got, theirs.Name)
	}
}

func TestLeftover(t *testing.T) {
	now := time.Now()
	cr := func(labels map[string]string, age time.Duration) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{ObjectMeta: metav1.ObjectMeta{Labels: labels, CreationTimestamp: metav1.NewTime(now.Add(-age))}}
	}
	ours := map[string]string{labelManagedBy: managedByValue}
	for _, tc := range []struct {
		name string
		cr   *cmapi.CertificateRequest
		want bool
	}{
		{"ours, old", cr(ours, SweepAge), true},
		{"ours, young: a replica may wait for it", cr(ours, SweepAge-time.Second), false},
		{"unlabelled (FSM's, the user's)", cr(nil, 48*time.Hour), false},
		{"another manager's", cr(map[string]string{labelManagedBy: "fsm"}, 48*time.Hour), false},
	} {
		if got := leftover(tc.cr, now); got != tc.want {
			t.Errorf("%s: leftover = %v, want %v", tc.name, got, tc.want)
		}
	}
}
