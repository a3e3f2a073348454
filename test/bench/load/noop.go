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
	noopPodLabel   = "bench.flomesh.io/noop-admitted"
	noopConfigName = "fsm-load-noop"
	noopPath       = "/mutate-noop"
	noopTag        = "[no-op webhook, in the load tool's process]"
)

// clientWritesSecret says whether a phase's client creates a Secret of a
// bootstrap Secret's size before each pod (and deletes it with the pod).
func clientWritesSecret(ns string) bool { return ns == nsSecret || ns == nsNoop }

// namespaceLabels are the labels a phase's namespace is created with: the
// meshed phase's are monitored by the mesh, the noop phase's matched by the
// no-op webhook, the others' by neither.
func namespaceLabels(name string) map[string]string {
	switch {
	case strings.HasPrefix(name, nsMeshed):
		return map[string]string{fsmnames.MonitoredByLabel: "fsm"}
	case strings.HasPrefix(name, nsNoop):
		return map[string]string{noopNamespaceLabel: "true"}
	}
	return nil
}

// noopConfiguration registers the no-op webhook by URL on port, trusting
// caPEM: pod creates in the noop namespaces only, with the injector's
// failure policy and reinvocation, no side effects.
func noopConfiguration(port int, caPEM []byte) *admv1.MutatingWebhookConfiguration {
	tmpl := &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: noopConfigName},
		Webhooks: []admv1.MutatingWebhook{{
			Name: "noop.bench.flomesh.io",
			Rules: []admv1.RuleWithOperations{{
				Operations: []admv1.OperationType{admv1.Create},
				Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{noopNamespaceLabel: "true"}},
			FailurePolicy:           ptr.To(admv1.Fail),
			MatchPolicy:             ptr.To(admv1.Exact),
			SideEffects:             ptr.To(admv1.SideEffectClassNone),
			ReinvocationPolicy:      ptr.To(admv1.NeverReinvocationPolicy),
			TimeoutSeconds:          ptr.To[int32](20),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	return webhooks.NewMutating(tmpl, webhooks.Endpoint{URLHost: "127.0.0.1", Port: port}, noopPath, caPEM)
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
		Subject:               pkix.Name{CommonName: "fsm-load no-op webhook"},
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

// noopServer is the no-op webhook's TLS server, in this process.
type noopServer struct {
	srv   *http.Server
	port  int
	caPEM []byte
	done  chan error
}

// startNoopServer serves the no-op webhook on a loopback port.
func startNoopServer() (*noopServer, error) {
	cert, caPEM, err := selfSignedServing(time.Now())
	if err != nil {
		return nil, fmt.Errorf("no-op webhook certificate: %w", err)
	}
	port, err := freeport.Loopback()
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("no-op webhook: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle(noopPath, reviewhttp.NewAdmission(noopHandler).Named("noop"))
	// The transport serve's webhook listeners have (webhooks/server.go):
	// HTTP/1.1 only, negotiated by ALPN (a TLS listener of our own, since
	// ServeTLS would offer h2), and a 120 s idle timeout, so the
	// apiserver's side of the call costs what it costs with the injector.
	tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12, NextProtos: []string{"http/1.1"}})
	s := &noopServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second},
		port: port, caPEM: caPEM, done: make(chan error, 1),
	}
	go func() { s.done <- s.srv.Serve(tl) }()
	return s, nil
}

func (s *noopServer) stop(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return err
	}
	if err := <-s.done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// startNoop serves and registers the no-op webhook and waits until the
// apiserver calls it (a dry-run pod in the noop namespace comes back
// labelled), so the phase's first creates go through it too. stop deletes
// the configuration, then stops the server.
func startNoop(ctx context.Context, cl client.Client) (stop func() error, err error) {
	s, err := startNoopServer()
	if err != nil {
		return nil, err
	}
	cfg := noopConfiguration(s.port, s.caPEM)
	stop = func() error {
		err := cl.Delete(ctx, cfg)
		if apierrors.IsNotFound(err) {
			err = nil
		}
		return errors.Join(err, s.stop(ctx))
	}
	if err := cl.Create(ctx, cfg); err != nil {
		return nil, errors.Join(fmt.Errorf("registering the no-op webhook: %w", err), s.stop(ctx))
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "noop-probe", Namespace: nsNoop},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "app"}}},
		}
		err := cl.Create(ctx, pod, client.DryRunAll)
		if err == nil && pod.Labels[noopPodLabel] == "true" {
			return stop, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("pods still come back without its label")
			}
			return nil, errors.Join(fmt.Errorf("no-op webhook never became active in 30 s: %w", err), stop())
		}
		time.Sleep(200 * time.Millisecond)
	}
}
