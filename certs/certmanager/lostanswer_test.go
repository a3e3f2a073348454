package certmanager

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// lateCreateAnswer lets a CertificateRequest POST reach the apiserver (which
// stores the object), and then hands the answer back only after the caller's
// context has ended: what a loaded apiserver does to an admission whose
// deadline falls while its create is in flight.
type lateCreateAnswer struct{ rt http.RoundTripper }

func (l lateCreateAnswer) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || !strings.HasSuffix(req.URL.Path, "/certificaterequests") {
		return l.rt.RoundTrip(req)
	}
	resp, err := l.rt.RoundTrip(req.Clone(context.WithoutCancel(req.Context())))
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	<-req.Context().Done()
	return nil, req.Context().Err()
}

// TestCreateAnsweredAfterDeadlineLeavesNoRequest: a CertificateRequest the
// apiserver stored but whose answer came after the caller's deadline is
// deleted too: its name is ours, not the apiserver's (generateName), so it
// is known without the answer.
func TestCreateAnsweredAfterDeadlineLeavesNoRequest(t *testing.T) {
	h := startCMEnv(t, 24*time.Hour, false)
	cfg := rest.CopyConfig(h.env.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return lateCreateAnswer{rt} })
	i := h.issuer(t, h.manual, DefaultIssuerName, cmclient.NewForConfigOrDie(cfg))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := i.Issue(ctx, certs.Request{CommonName: "p1.sidecar.sa.bookstore.cluster.local", Validity: time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.ECDSAP256})
	if err == nil {
		t.Fatal("Issue succeeded through a create whose answer never came")
	}
	t.Logf("Issue: %v", err)
	time.Sleep(2 * time.Second) // any clean-up Issue left running
	assertNoRequests(t, h.cm, h.manual)
}
