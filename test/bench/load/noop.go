package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// The no-op webhook phase: the pod + Secret phase's creates through a
// mutating webhook that does nothing but decode the pod and add one label.
// It prices what any mutating webhook costs the apiserver on this machine
// (TLS, the AdmissionReview round trip, applying a JSON patch), so the
// injector's figure can be split into that floor and its own cost.
const (
	// noopNamespaceLabel marks the noop phase's namespaces, the only ones
	// the no-op webhook's namespaceSelector matches.
	noopNamespaceLabel = "bench.flomesh.io/noop-webhook"
	// noopPodLabel is the label the no-op webhook adds to every pod.
	noopPodLabel = "bench.flomesh.io/noop-admitted"
	noopPath     = "/mutate-noop"
	noopTag      = "[no-op webhook, in the load tool's process]"
)

// clientWritesSecret says whether a phase's client creates a Secret of a
// bootstrap Secret's size before each pod (and deletes it with the pod).
func clientWritesSecret(ns string) bool { return ns == nsSecret || ns == nsNoop || ns == nsSized }

// namespaceLabels are the labels a phase's namespace is created with: the
// meshed phase's are monitored by the mesh, the noop and sized phases'
// matched by their webhook, the others' by neither.
func namespaceLabels(name string) map[string]string {
	switch {
	case strings.HasPrefix(name, nsMeshed):
		return map[string]string{fsmnames.MonitoredByLabel: "fsm"}
	case strings.HasPrefix(name, nsNoop):
		return map[string]string{noopNamespaceLabel: "true"}
	case strings.HasPrefix(name, nsSized):
		return map[string]string{sizedNamespaceLabel: "true"}
	}
	return nil
}

// toolWebhook is a mutating webhook served in this process for one phase
// (noop, sized): only the answer differs between them.
type toolWebhook struct {
	name      string // of the configuration (fsm-load-<name>) and the webhook
	path      string
	nsLabel   string // the label ("true") of the namespaces it matches
	namespace string // the phase's, where the activation probe goes
	handler   admission.Handler
	// admitted says why a pod the apiserver returned did not go through it
	// (nil: it did).
	admitted func(*corev1.Pod) error
}

// noopWebhook is the noop phase's.
var noopWebhook = toolWebhook{
	name: "noop", path: noopPath, nsLabel: noopNamespaceLabel, namespace: nsNoop, handler: noopHandler,
	admitted: func(pod *corev1.Pod) error {
		if pod.Labels[noopPodLabel] != "true" {
			return fmt.Errorf("pod %s came back without label %s", pod.Name, noopPodLabel)
		}
		return nil
	},
}

// sizedWebhook is the sized phase's, answering a.
func sizedWebhook(a *sizedAnswer) toolWebhook {
	return toolWebhook{name: "sized", path: sizedPath, nsLabel: sizedNamespaceLabel, namespace: nsSized, handler: a, admitted: sizedInjected}
}

// phaseWebhooks start the webhook a phase's creates go through in this
// process, if any.
type phaseWebhooks struct {
	cl    client.Client
	sized *sizedAnswer // nil: the run has no sized phase
}

// start serves and registers ns's webhook (startWebhook); stop removes it,
// and does nothing for a phase without one.
func (p phaseWebhooks) start(ctx context.Context, ns string) (stop func() error, err error) {
	switch {
	case ns == nsNoop:
		return startWebhook(ctx, p.cl, noopWebhook)
	case ns == nsSized && p.sized != nil:
		return startWebhook(ctx, p.cl, sizedWebhook(p.sized))
	case ns == nsSized:
		return nil, errors.New("the sized phase's answer was not computed")
	}
	return func() error { return nil }, nil
}

// configuration registers w by URL on port, trusting caPEM: pod creates in
// its phase's namespaces only, with the injector's failure policy and
// reinvocation, no side effects.
func (w toolWebhook) configuration(port int, caPEM []byte) *admv1.MutatingWebhookConfiguration {
	tmpl := &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-load-" + w.name},
		Webhooks: []admv1.MutatingWebhook{{
			Name: w.name + ".bench.flomesh.io",
			Rules: []admv1.RuleWithOperations{{
				Operations: []admv1.OperationType{admv1.Create},
				Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{w.nsLabel: "true"}},
			FailurePolicy:           ptr.To(admv1.Fail),
			MatchPolicy:             ptr.To(admv1.Exact),
			SideEffects:             ptr.To(admv1.SideEffectClassNone),
			ReinvocationPolicy:      ptr.To(admv1.NeverReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](20),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	return webhooks.NewMutating(tmpl, webhooks.Endpoint{URLHost: "127.0.0.1", Port: port}, w.path, caPEM)
}

// noopLabelPatch is the one operation the no-op webhook answers with:
// noopPodLabel added to the pod's labels (the map itself when it has none).
func noopLabelPatch(labels map[string]string) jsonpatch.Operation {
	if len(labels) == 0 {
		return jsonpatch.NewOperation("add", "/metadata/labels", map[string]string{noopPodLabel: "true"})
	}
	// RFC 6901: "~" and "/" in a key are escaped.
	key := strings.NewReplacer("~", "~0", "/", "~1").Replace(noopPodLabel)
	return jsonpatch.NewOperation("add", "/metadata/labels/"+key, "true")
}

// noopHandler decodes the pod, as every pod webhook must, and adds the
// label.
var noopHandler = admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("no-op webhook: decoding the pod of %s/%s: %w", req.Namespace, req.Name, err))
	}
	return admission.Patched("", noopLabelPatch(pod.Labels))
})

// selfSignedServing is a serving certificate for 127.0.0.1, its own CA:
// the caBundle to register is its PEM. It is valid from a minute before now
// for a week (long open-loop runs).
func selfSignedServing(now time.Time) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "fsm-load webhook"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// webhookServer is a tool webhook's TLS server, in this process.
type webhookServer struct {
	srv   *http.Server
	port  int
	caPEM []byte
	done  chan error
}

// startWebhookServer serves w on a loopback port.
func startWebhookServer(w toolWebhook) (*webhookServer, error) {
	cert, caPEM, err := selfSignedServing(time.Now())
	if err != nil {
		return nil, fmt.Errorf("%s webhook certificate: %w", w.name, err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("%s webhook: %w", w.name, err)
	}
	mux := http.NewServeMux()
	mux.Handle(w.path, reviewhttp.NewAdmission(w.handler).Named(w.name))
	// The transport serve's webhook listeners have (webhooks/server.go):
	// HTTP/1.1 only, negotiated by ALPN (a TLS listener of our own, since
	// ServeTLS would offer h2), and a 120 s idle timeout, so the
	// apiserver's side of the call costs what it costs with the injector.
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	s := &webhookServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second},
		port: port, caPEM: caPEM, done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(tl) }()
	return s, nil
}

func (s *webhookServer) stop(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startWebhook serves and registers w and waits until the apiserver calls
// it (a dry-run pod in its namespace comes back as w answers), so the
// phase's first creates go through it too. stop deletes the configuration,
// then stops the server.
func startWebhook(ctx context.Context, cl client.Client, w toolWebhook) (stop func() error, err error) {
	s, err := startWebhookServer(w)
	if err != nil {
		return nil, err
	}
	cfg := w.configuration(s.port, s.caPEM)
	stop = func() error {
		err := cl.Delete(ctx, cfg)
		if apierrors.IsNotFound(err) {
			err = nil
		}
		return errors.Join(err, s.stop(ctx))
	}
	if err := cl.Create(ctx, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("registering the %s webhook: %w", w.name, err), s.stop(ctx))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod := clientPod(client.ObjectKey{Namespace: w.namespace, Name: "p-probe"})
		err := cl.Create(ctx, pod, client.DryRunAll)
		if err == nil {
			if err = w.admitted(pod); err == nil {
				return stop, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, errors.Join(fmt.Errorf("the %s webhook never became active in 30 s: %w", w.name, err), stop())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
