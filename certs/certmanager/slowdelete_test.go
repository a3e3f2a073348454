package certmanager

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestSlowCleanUpKeepsTheCallersDeadline: the delete of a CertificateRequest
// whose wait ended at the caller's deadline (an issuer nobody serves, as
// an Issuer not Ready) no longer holds the caller past that deadline for up
// to deleteTimeout. The injector's admission got its error after the
// apiserver's timeoutSeconds, so the user saw "context deadline exceeded"
// instead of the error naming the issuer. The request is still deleted,
// in the background.
func TestSlowCleanUpKeepsTheCallersDeadline(t *testing.T) {
	h := startCMEnv(t, 24*time.Hour, false)
	// The delete is held until Issue has returned: waited for, it holds
	// Issue until its own deleteTimeout ends.
	release := make(chan struct{})
	var once sync.Once
	releaseDeletes := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseDeletes)
	cfg := rest.CopyConfig(h.env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return testenv.HeldRequests{Next: rt, Method: http.MethodDelete, PathPart: "/certificaterequests/", Release: release}
	})
	i := h.issuer(t, h.manual, DefaultIssuerName, cmclient.NewForConfigOrDie(cfg))

	const deadline = 3 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	start := time.Now()
	_, err := i.Issue(ctx, certs.Request{CommonName: "p1.sidecar.sa.bookstore.cluster.local", Validity: time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256})
	took := time.Since(start)
	releaseDeletes()
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("Issue: err = %v, want the wait's timeout", err)
	}
	t.Logf("Issue returned after %s: %v", took.Round(time.Millisecond), err)
	// Slack for a loaded machine; waiting for the held delete takes
	// deleteTimeout past the deadline.
	if took > deadline+deleteTimeout/2 {
		t.Errorf("Issue returned %s after its %s deadline: the clean-up's delete held it", (took - deadline).Round(time.Millisecond), deadline)
	}
	// Deleted all the same, once the held delete is let through.
	waitNoRequests(t, h.cm, h.manual, deleteTimeout)
}

// waitNoRequests waits up to within for ns to hold no CertificateRequest:
// the clean-up of a request whose caller's deadline ended first runs on
// in the background.
func waitNoRequests(t *testing.T, cm cmclient.Interface, ns string, within time.Duration) {
	t.Helper()
	end := time.Now().Add(within)
	for {
		list, err := cm.CertmanagerV1().CertificateRequests(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) == 0 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%d CertificateRequest(s) left behind in %s after %s", len(list.Items), ns, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
