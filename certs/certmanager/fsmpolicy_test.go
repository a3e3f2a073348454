package certmanager

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmfake "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned/fake"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

const policyNS = "fsm-system"

// approverPolicy models an approver-policy CertificateRequestPolicy
// (policy.cert-manager.io/v1alpha1) written for the CertificateRequests
// FSM v1.5.1 creates: "A CertificateRequest can request a subset of what
// is declared as allowed ... Omitted fields declare that the equivalent
// CertificateRequest field must be omitted or have an empty value." A nil
// list allows anything for that field (a policy that does not constrain
// it); an empty non-nil list allows nothing.
type approverPolicy struct {
	usages        []cmapi.KeyUsage // allowed.usages
	organizations []string         // allowed.subject.organizations
	dnsNames      []string         // allowed.dnsNames.values (wildcards)
	// signAfter: the issuer signs a request only once it is this old (an
	// issuer waiting on a manual approval or a slow external CA).
	signAfter time.Duration
}

func (p approverPolicy) deny(cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) string {
	if p.usages != nil {
		for _, u := range cr.Spec.Usages {
			if !slices.Contains(p.usages, u) {
				return fmt.Sprintf("spec.allowed.usages: Invalid value: %q", u)
			}
		}
	}
	if p.organizations != nil {
		for _, o := range csr.Subject.Organization {
			if !slices.Contains(p.organizations, o) {
				return fmt.Sprintf("spec.allowed.subject.organizations: Invalid value: %q", o)
			}
		}
	}
	if p.dnsNames != nil {
		for _, n := range csr.DNSNames {
			ok := false
			for _, pat := range p.dnsNames {
				if policyWildcard(pat, n) {
					ok = true
				}
			}
			if !ok {
				return fmt.Sprintf("spec.allowed.dnsNames.values: Invalid value: %q", n)
			}
		}
	}
	if cr.Spec.IsCA {
		return "spec.allowed.isCA: Invalid value: true"
	}
	return ""
}

// policyWildcard is approver-policy's wildcard: "*" matches any run of
// characters, dots included.
func policyWildcard(pattern, s string) bool {
	if !strings.Contains(pattern, "*") {
		return pattern == s
	}
	parts := strings.Split(pattern, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// approvingCertManager is a cert-manager clientset with approver-policy and a
// CA issuer behind it: each new CertificateRequest is denied (Denied=True,
// Ready=False reason Denied, as cert-manager sets them) when policy denies
// it, else signed with status.ca. It counts denials.
func approvingCertManager(t *testing.T, policy approverPolicy) (*cmfake.Clientset, *atomic.Int64) {
	t.Helper()
	root, err := certs.NewRootAuthority(certs.RSA2048, 24*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cm := newFakeClientset()
	var denied atomic.Int64
	runIssuer(t, cm, policyNS, func(_ int, cr *cmapi.CertificateRequest, csr *x509.CertificateRequest) (bool, error) {
		if len(cr.Status.Conditions) > 0 || time.Since(cr.CreationTimestamp.Time) < policy.signAfter {
			return false, nil
		}
		if why := policy.deny(cr, csr); why != "" {
			denied.Add(1)
			cr.Status.Conditions = []cmapi.CertificateRequestCondition{
				{Type: cmapi.CertificateRequestConditionDenied, Status: cmmeta.ConditionTrue, Reason: "policy.cert-manager.io", Message: "No policy approved this request: [fsm: " + why + "]"},
				{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionFalse, Reason: cmapi.CertificateRequestReasonDenied, Message: "The CertificateRequest was denied by an approval controller"},
			}
			return true, nil
		}
		leaf, err := root.Sign(certs.Request{CommonName: csr.Subject.CommonName, DNSNames: csr.DNSNames, Validity: cr.Spec.Duration.Duration, Usage: certs.UsageBoth}, csr.PublicKey, time.Now())
		if err != nil {
			return false, err
		}
		cr.Status.Certificate = certs.EncodeCertsPEM(leaf)
		cr.Status.CA = certs.EncodeCertsPEM(root.Cert)
		cr.Status.Conditions = []cmapi.CertificateRequestCondition{
			{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "policy.cert-manager.io"},
			{Type: cmapi.CertificateRequestConditionReady, Status: cmmeta.ConditionTrue, Reason: "Issued"},
		}
		return true, nil
	})
	return cm, &denied
}

func newPolicyIssuer(t *testing.T, cm *cmfake.Clientset) *Issuer {
	t.Helper()
	i, err := New(Options{IssuerName: DefaultIssuerName, IssuerKind: DefaultIssuerKind, IssuerGroup: DefaultIssuerGroup, Namespace: policyNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// ourRequests are what fsm-webhooks asks cert-manager for: a webhook
// serving certificate (servingcert.Spec.Request, as certs/servingcert's
// Store issues it) and a sidecar bootstrap certificate as
// injector.certRequest builds it (RSA of certKeyBitSize under the default
// --bootstrap-key-algorithm auto with cert-manager).
func ourRequests() map[string]certs.Request {
	spec := servingcert.Spec{SecretName: "mutating-webhook-cert-secret", Namespace: policyNS, ServiceName: "fsm-injector"}
	serving := spec.Request()
	serving.Validity = time.Hour
	serving.KeyAlgorithm = certs.RSA2048
	cn := "3fa85f64-5717-4562-b3fc-2c963f66afa6.sidecar.bookbuyer.bookstore.cluster.local"
	return map[string]certs.Request{
		"serving":   serving,
		"bootstrap": {CommonName: cn, DNSNames: []string{cn}, Organization: "Flomesh Service Mesh", Validity: time.Hour, Usage: certs.UsageBoth, KeyAlgorithm: certs.RSA2048},
	}
}

// fsmLikeAccepted checks the fake policy approves what FSM v1.5.1 put in a
// CertificateRequest for cn (pkg/certificate/providers/certmanager/
// certificate_manager.go 104-152): an RSA CSR with subject CN only and DNS
// SAN cn, usages key encipherment and digital signature, isCA false.
func fsmLikeAccepted(t *testing.T, policy approverPolicy, cn string) {
	t.Helper()
	key, err := certs.GenerateKey(certs.RSA2048)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		SignatureAlgorithm: x509.SHA512WithRSA,
		Subject:            pkix.Name{CommonName: cn},
		DNSNames:           []string{cn},
	}, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, _ := x509.ParseCertificateRequest(csrDER)
	cr := &cmapi.CertificateRequest{Spec: cmapi.CertificateRequestSpec{
		Usages: []cmapi.KeyUsage{cmapi.UsageKeyEncipherment, cmapi.UsageDigitalSignature},
	}}
	if why := policy.deny(cr, csr); why != "" {
		t.Fatalf("the fake policy denies FSM v1.5.1's own request for %s: %s", cn, why)
	}
}

// TestApproverPolicyForFSMUsages: FSM v1.5.1's CertificateRequests
// carry spec.usages [key encipherment, digital signature] and nothing else
// (certificate_manager.go 146-148 at v1.5.1). An approver-policy that allows
// exactly those usages approved every FSM request and must approve ours
// (usagesFor): they once added server and client auth, which it denied: no
// serving certificate, no meshed pod.
func TestApproverPolicyForFSMUsages(t *testing.T) {
	policy := approverPolicy{usages: []cmapi.KeyUsage{cmapi.UsageKeyEncipherment, cmapi.UsageDigitalSignature}}
	issueUnderPolicy(t, policy)
}

// TestApproverPolicyForFSMSubject: FSM v1.5.1's CSR subject is the
// common name alone (certificate_manager.go 108-110). approver-policy
// denies a request whose CSR has a subject organization unless
// allowed.subject.organizations lists it; a policy written for FSM has
// none. Our requests carry O="Flomesh Service Mesh" (tresor's leaves keep
// it, as FSM's did); csrFor leaves it out of the CSR.
func TestApproverPolicyForFSMSubject(t *testing.T) {
	policy := approverPolicy{organizations: []string{}}
	issueUnderPolicy(t, policy)
}

// TestApproverPolicyForFSMDNSNames: FSM v1.5.1's serving-certificate
// CSR names only "<svc>.<ns>.svc" (DNSNames = [cn], pkg/webhook/server.go
// 86-89); its other requests name "<...>.cluster.local" and "init-cert".
// A policy allowing dnsNames "*.svc", "*.cluster.local" and "init-cert"
// approved all of them and must approve ours: servingcert.Spec.DNSNames once
// added "<svc>" and "<svc>.<ns>", which it denied.
func TestApproverPolicyForFSMDNSNames(t *testing.T) {
	policy := approverPolicy{dnsNames: []string{"*.svc", "*.cluster.local", "init-cert"}}
	issueUnderPolicy(t, policy)
}

func issueUnderPolicy(t *testing.T, policy approverPolicy) {
	t.Helper()
	for _, cn := range []string{"fsm-injector.fsm-system.svc", "3fa85f64.sidecar.bookbuyer.bookstore.cluster.local", initCertName} {
		fsmLikeAccepted(t, policy, cn)
	}
	cm, denied := approvingCertManager(t, policy)
	i := newPolicyIssuer(t, cm)
	for name, req := range ourRequests() {
		// A hang guard: the fake issuer answers within milliseconds, but
		// the RSA key is generated inline, seconds on a starved machine.
		ctx, cancel := context.WithTimeout(context.Background(), DefaultTimeout)
		_, err := i.Issue(ctx, req)
		cancel()
		if err != nil {
			t.Errorf("%s certificate: a policy that approved every FSM v1.5.1 CertificateRequest denies ours: %v", name, err)
		}
	}
	// Nothing is left behind either way (FSM deleted its requests only
	// after a success).
	list, err := cm.CertmanagerV1().CertificateRequests(policyNS).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Errorf("%d CertificateRequests left behind", len(list.Items))
	}
	t.Logf("%d requests denied", denied.Load())
}

// TestSlowIssuerWithinFSMWait: FSM v1.5.1 waited up to 60 s for a
// CertificateRequest to be Ready. A serving certificate is asked for with no
// deadline of the caller's, so DefaultTimeout is the wait: an issuer that
// signs after 35 s (a manual approval, a slow external CA) served FSM and
// must serve us; giving up deletes the request, and every retry would start
// over.
func TestSlowIssuerWithinFSMWait(t *testing.T) {
	t.Parallel()
	const signAfter = 35 * time.Second
	cm, _ := approvingCertManager(t, approverPolicy{signAfter: signAfter})
	spec := servingcert.Spec{SecretName: "mutating-webhook-cert-secret", Namespace: policyNS, ServiceName: "fsm-injector"}
	start := time.Now()
	if _, err := newPolicyIssuer(t, cm).Issue(context.Background(), spec.Request()); err != nil {
		t.Fatalf("an issuer signing %s after the request (within FSM v1.5.1's 60 s wait) is given up on after %s: %v", signAfter, time.Since(start).Round(time.Second), err)
	}
}
