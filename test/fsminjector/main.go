// Command fsminjector stands in for FSM v1.5.1's injector pod
// (cmd/fsm-injector) in the node suite's takeover test (test/node,
// TestTakeoverOnNode). It does what that pod does to the cluster, from FSM's
// source, and nothing FSM's sidecar injection does:
//
//   - it takes FSM's injector arguments (the Deployment of FSM's chart runs
//     unchanged but for its image) and refuses a certificate manager other
//     than tresor;
//   - it reads the mesh root from the CA Secret (--ca-bundle-secret-name,
//     keys ca.crt and private.key, the key PKCS#8 "PRIVATE KEY" PEM as
//     FSM's tresor stores it) and issues its serving certificate from it:
//     RSA 2048, CN and DNS SAN fsm-injector.<namespace>.svc, a decade
//     (pkg/webhook/server.go setCert, pkg/certificate/providers/tresor);
//   - with that certificate it creates, or gets and updates keeping the
//     object's metadata, the MutatingWebhookConfiguration
//     --webhook-config-name (pkg/injector/webhook.go
//     createOrUpdateMutatingWebhook), conflicts on update ignored;
//   - it serves /mutate-pod-creation on 9090 (TLS 1.3 and up) and answers
//     every pod with a JSON patch that adds the annotation ServedBy, so the
//     test sees which injector admitted a pod; other kinds are allowed
//     unchanged;
//   - it answers /healthz on 9091 once serving, the probes of FSM's
//     Deployment;
//   - on SIGTERM or SIGINT it returns at once while its webhook server
//     begins http.Server.Shutdown, as FSM's main does (pkg/signals, its
//     webhook server's Run): no drain.
//
// It is test code: it lives under test/ and cmd/fsm-webhooks's
// TestBinaryLinksNoTestCode keeps it out of the product's binary.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
)

// ServedBy is the annotation the stand-in adds to every pod it admits (the
// envtest takeover test's key, test/chart/install).
const ServedBy = "takeover-test.flomesh.io/served-by-fsm"

// FSM v1.5.1's constants (pkg/constants, pkg/injector/webhook.go).
const (
	injectorName     = "fsm-injector"
	webhookName      = "fsm-inject.k8s.io"
	webhookPath      = "/mutate-pod-creation"
	webhookPort      = 9090
	healthPort       = 9091
	healthPath       = "/healthz"
	certValidity     = 87600 * time.Hour // FSMCertificateValidityPeriod
	certKeyBits      = 2048              // MeshConfig certKeyBitSize's default
	certOrganization = "Flomesh Service Mesh"
)

type options struct {
	namespace, meshName, version, configName, caSecret, certManager string
	timeout                                                         int
}

// parseFlags parses FSM v1.5.1's injector flags (cmd/fsm-injector): those
// the stand-in uses and, so that FSM's Deployment runs unchanged, the ones it
// ignores.
func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("fsm-injector", flag.ContinueOnError)
	fs.StringVar(&o.namespace, "fsm-namespace", "", "namespace FSM runs in")
	fs.StringVar(&o.meshName, "mesh-name", "", "mesh name")
	fs.StringVar(&o.version, "fsm-version", "", "FSM version, the configuration's version label")
	fs.StringVar(&o.configName, "webhook-config-name", "", "MutatingWebhookConfiguration to create or update")
	fs.IntVar(&o.timeout, "webhook-timeout", 20, "the webhook's timeoutSeconds")
	fs.StringVar(&o.caSecret, "ca-bundle-secret-name", "", "Secret holding the mesh root")
	fs.StringVar(&o.certManager, "certificate-manager", "tresor", "certificate provider (tresor only)")
	for _, ignored := range []string{"verbosity", "trust-domain", "cert-manager-issuer-name", "cert-manager-issuer-kind",
		"cert-manager-issuer-group", "fsm-container-pull-policy", "fsm-config-name", "kubeconfig"} {
		fs.String(ignored, "", "ignored (FSM's)")
	}
	for _, ignored := range []string{"enable-mesh-root-certificate", "enable-reconciler"} {
		fs.Bool(ignored, false, "ignored (FSM's)")
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	for name, v := range map[string]string{"fsm-namespace": o.namespace, "mesh-name": o.meshName, "webhook-config-name": o.configName, "ca-bundle-secret-name": o.caSecret} {
		if v == "" {
			return o, fmt.Errorf("--%s is required", name)
		}
	}
	if o.certManager != "tresor" {
		return o, fmt.Errorf("--certificate-manager %q: the stand-in reads a tresor root only", o.certManager)
	}
	if o.timeout < 1 || o.timeout > 30 {
		return o, fmt.Errorf("--webhook-timeout %d: must be 1-30 (the apiserver's bounds)", o.timeout)
	}
	return o, nil
}

func main() {
	log.SetFlags(log.LstdFlags | log.Lmicroseconds | log.LUTC)
	o, err := parseFlags(os.Args[1:])
	if err != nil {
		log.Fatal(err)
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
	log.Print("stopping fsm-injector stand-in")
}

func run(o options) error {
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	cfg, err := rest.InClusterConfig()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	secret, err := cs.CoreV1().Secrets(o.namespace).Get(ctx, o.caSecret, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading the mesh root: %w", err)
	}
	root, err := parseRoot(secret.Data)
	if err != nil {
		return fmt.Errorf("secret %s/%s: %w", o.namespace, o.caSecret, err)
	}
	cert, err := issueServing(root, fmt.Sprintf("%s.%s.svc", injectorName, o.namespace))
	if err != nil {
		return err
	}
	if err := createOrUpdate(ctx, cs, mutatingConfiguration(o, root.pem)); err != nil {
		return err
	}
	log.Printf("registered %s with the root of %s/%s as caBundle", o.configName, o.namespace, o.caSecret)

	mux := http.NewServeMux()
	mux.HandleFunc(webhookPath, admit)
	srv := &http.Server{
		Addr:              fmt.Sprintf(":%d", webhookPort),
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13},
	}
	go func() {
		log.Printf("webhook server stopped: %v", srv.ListenAndServeTLS("", ""))
	}()
	// FSM's webhook server's Run: Shutdown once the context is done. FSM's
	// main returns at the same moment, so the Shutdown may not finish.
	go func() {
		<-ctx.Done()
		// No deadline, as FSM's.
		if err := srv.Shutdown(context.Background()); err != nil {
			log.Printf("webhook server shutdown: %v", err)
		}
	}()
	health := &http.Server{Addr: fmt.Sprintf(":%d", healthPort), ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != healthPath {
			http.NotFound(w, r)
			return
		}
		_, _ = io.WriteString(w, "Service is alive")
	})}
	go func() { log.Printf("health server stopped: %v", health.ListenAndServe()) }()
	<-ctx.Done()
	return nil
}

// meshRoot is the mesh CA as FSM's tresor keeps it.
type meshRoot struct {
	cert *x509.Certificate
	key  *rsa.PrivateKey
	pem  []byte
}

// parseRoot reads fsm-ca-bundle's data: ca.crt (PEM) and private.key (PKCS#8
// RSA, PEM type PRIVATE KEY), FSM v1.5.1's layout (pkg/certificate/encode.go).
func parseRoot(data map[string][]byte) (meshRoot, error) {
	crt, err := decodePEM(data, "ca.crt", "CERTIFICATE")
	if err != nil {
		return meshRoot{}, err
	}
	cert, err := x509.ParseCertificate(crt)
	if err != nil {
		return meshRoot{}, fmt.Errorf("ca.crt: %w", err)
	}
	der, err := decodePEM(data, "private.key", "PRIVATE KEY")
	if err != nil {
		return meshRoot{}, err
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return meshRoot{}, fmt.Errorf("private.key: %w", err)
	}
	key, ok := k.(*rsa.PrivateKey)
	if !ok {
		return meshRoot{}, fmt.Errorf("private.key: a %T, want RSA (tresor's)", k)
	}
	return meshRoot{cert: cert, key: key, pem: data["ca.crt"]}, nil
}

func decodePEM(data map[string][]byte, key, typ string) ([]byte, error) {
	b, ok := data[key]
	if !ok {
		return nil, fmt.Errorf("no key %q", key)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != typ {
		return nil, fmt.Errorf("%s: want one PEM block of type %q", key, typ)
	}
	return block.Bytes, nil
}

// issueServing issues the webhook server's certificate for dnsName from the
// mesh root, as FSM's tresor issues an Internal certificate.
func issueServing(root meshRoot, dnsName string) (tls.Certificate, error) {
	key, err := rsa.GenerateKey(rand.Reader, certKeyBits)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial, DNSNames: []string{dnsName},
		Subject:   pkix.Name{CommonName: dnsName, Organization: []string{certOrganization}},
		NotBefore: now, NotAfter: now.Add(certValidity),
		KeyUsage:              x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root.cert, &key.PublicKey, root.key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("issuing the serving certificate for %s: %w", dnsName, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// mutatingConfiguration is the configuration FSM v1.5.1's injector writes
// (createOrUpdateMutatingWebhook; no reconcile label: --enable-reconciler is
// false in FSM's chart).
func mutatingConfiguration(o options, caBundle []byte) *admv1.MutatingWebhookConfiguration {
	create := []admv1.OperationType{admv1.Create}
	return &admv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: o.configName, Labels: map[string]string{
			"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": o.meshName,
			"app.kubernetes.io/version": o.version, "app": injectorName,
		}},
		Webhooks: []admv1.MutatingWebhook{{
			Name: webhookName,
			ClientConfig: admv1.WebhookClientConfig{
				Service:  &admv1.ServiceReference{Namespace: o.namespace, Name: injectorName, Path: ptr.To(webhookPath), Port: ptr.To[int32](webhookPort)},
				CABundle: caBundle,
			},
			FailurePolicy: ptr.To(admv1.Fail),
			MatchPolicy:   ptr.To(admv1.Exact),
			NamespaceSelector: &metav1.LabelSelector{
				MatchLabels: map[string]string{"flomesh.io/monitored-by": o.meshName},
				MatchExpressions: []metav1.LabelSelectorRequirement{
					{Key: "flomesh.io/ignore", Operator: metav1.LabelSelectorOpDoesNotExist},
					{Key: "name", Operator: metav1.LabelSelectorOpNotIn, Values: []string{o.namespace}},
					{Key: "control-plane", Operator: metav1.LabelSelectorOpDoesNotExist},
				},
			},
			Rules: []admv1.RuleWithOperations{
				{Operations: create, Rule: admv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}},
				{Operations: create, Rule: admv1.Rule{APIGroups: []string{"machine.flomesh.io"}, APIVersions: []string{"v1alpha1"}, Resources: []string{"virtualmachines"}}},
			},
			SideEffects:             ptr.To(admv1.SideEffectClassNoneOnDryRun),
			TimeoutSeconds:          ptr.To(int32(o.timeout)),
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
}

// createOrUpdate creates want or, when it exists, replaces it keeping the
// live object's metadata; a conflict is another injector's write and is
// ignored, as FSM's does.
func createOrUpdate(ctx context.Context, cs kubernetes.Interface, want *admv1.MutatingWebhookConfiguration) error {
	api := cs.AdmissionregistrationV1().MutatingWebhookConfigurations()
	_, err := api.Create(ctx, want, metav1.CreateOptions{})
	if !apierrors.IsAlreadyExists(err) {
		return err
	}
	existing, err := api.Get(ctx, want.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	want.ObjectMeta = existing.ObjectMeta
	if _, err := api.Update(ctx, want, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return err
	}
	return nil
}

// admit answers an AdmissionReview: a pod gets the ServedBy annotation.
func admit(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(w, "decoding the AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	if review.Request == nil {
		http.Error(w, "an AdmissionReview without a request", http.StatusBadRequest)
		return
	}
	resp, err := respond(review.Request)
	if err != nil {
		resp = &admissionv1.AdmissionResponse{UID: review.Request.UID, Result: &metav1.Status{Status: metav1.StatusFailure, Message: err.Error(), Code: http.StatusBadRequest}}
	}
	review.Request, review.Response = nil, resp
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(review); err != nil {
		log.Printf("writing the AdmissionReview: %v", err)
	}
}

// respond allows req; a pod's response carries the patch adding ServedBy.
func respond(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, error) {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if req.Kind.Kind != "Pod" {
		return resp, nil
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, fmt.Errorf("decoding the pod: %w", err)
	}
	// Both sides through the same type, so the patch holds the annotation
	// only.
	before, err := json.Marshal(&pod)
	if err != nil {
		return nil, err
	}
	if pod.Annotations == nil {
		pod.Annotations = map[string]string{}
	}
	pod.Annotations[ServedBy] = "true"
	after, err := json.Marshal(&pod)
	if err != nil {
		return nil, err
	}
	ops, err := jsonpatch.CreatePatch(before, after)
	if err != nil {
		return nil, err
	}
	patch, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	resp.Patch, resp.PatchType = patch, ptr.To(admissionv1.PatchTypeJSONPatch)
	return resp, nil
}
