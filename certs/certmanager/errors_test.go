package certmanager

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
	cmmeta "github.com/cert-manager/cert-manager/pkg/apis/meta/v1"
	cmclient "github.com/cert-manager/cert-manager/pkg/client/clientset/versioned"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestIssuanceErrors: what an operator reads when issuance fails must name
// the issuer the request went to (fsm.certmanager.issuerName/Kind) and the
// reason, and must not blame something that did not happen (the denial's
// wording: TestCertManager/denied).
func TestIssuanceErrors(t *testing.T) {
	h := startCMEnv(t, 24*time.Hour, true)
	ctx := context.Background()
	req := certs.Request{CommonName: "x.svc", DNSNames: []string{"x.svc"}, Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256}

	// An Issuer that exists but is not Ready (its CA Secret is missing):
	// cert-manager says only "Referenced issuer does not have a Ready
	// status condition", so our error is all that tells which one, and
	// the Issuer's own Ready condition (set by cert-manager's CA issuer
	// Setup) is what says why: the Secret to create.
	if _, err := h.cm.CertmanagerV1().Issuers(h.auto).Create(ctx, &cmapi.Issuer{
		ObjectMeta: metav1.ObjectMeta{Name: "not-ready"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "no-such-secret"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	notReady := waitIssuerNotReady(t, h.cm, h.auto, "not-ready")
	issueNotReady := func(t *testing.T, cm cmclient.Interface) error {
		t.Helper()
		i := h.issuer(t, h.auto, "not-ready", cm)
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := i.Issue(ictx, req)
		t.Logf("Issue: %v", err)
		if err == nil || !strings.Contains(err.Error(), "reason Pending: "+issuerNotReadyMessage) {
			t.Fatalf("err = %v, want the request's own Pending condition", err)
		}
		if !strings.Contains(err.Error(), `Issuer "not-ready"`) {
			t.Errorf("the error does not name the issuer (Issuer \"not-ready\") the request waited on")
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("the error is no longer a timeout: %v", err)
		}
		assertNoRequests(t, h.cm, h.auto)
		return err
	}
	t.Run("issuer not Ready names the issuer and why", func(t *testing.T) {
		err := issueNotReady(t, nil)
		want := fmt.Sprintf("; Issuer %s/not-ready Ready=False reason %s: %s): ", h.auto, notReady.Reason, notReady.Message)
		if !strings.Contains(err.Error(), want) {
			t.Errorf("the error lacks the Issuer's Ready condition %q", want)
		}
		if !strings.Contains(err.Error(), `"no-such-secret"`) {
			t.Errorf("the error does not name the missing CA Secret no-such-secret")
		}
	})

	// Without get on issuers (a hand-written Role): the read is said to
	// have failed, and the request's own condition is kept.
	t.Run("issuer get forbidden keeps the request's condition", func(t *testing.T) {
		cm := userClient(t, h, "fsm-webhooks-noissuer", []rbacv1.PolicyRule{
			{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificaterequests"}, Verbs: []string{"create", "watch", "list", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
		})
		err := issueNotReady(t, cm)
		if want := fmt.Sprintf("; Issuer %s/not-ready not read: Forbidden): ", h.auto); !strings.Contains(err.Error(), want) {
			t.Errorf("the error does not say the Issuer could not be read (%q)", want)
		}
	})

	// A client that may create CertificateRequests but not watch them (a
	// hand-written Role, an expired token: Forbidden/Unauthorized on the
	// watch). RetryWatcher hands the Forbidden status over as a watch.Error
	// event and closes: that status is the error, not a timeout blaming
	// the approver for a request cert-manager signed.
	t.Run("watch forbidden is reported as forbidden", func(t *testing.T) {
		cm := userClient(t, h, "fsm-webhooks-nowatch", []rbacv1.PolicyRule{
			{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificaterequests"}, Verbs: []string{"create", "get", "list", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
		})
		i := h.issuer(t, h.auto, DefaultIssuerName, cm)
		// A hang guard: the refused watch ends Issue at once, and a
		// deadline reached first would hide it behind a timeout.
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err := i.Issue(ictx, req)
		t.Logf("Issue: %v", err)
		if err == nil {
			t.Fatal("Issue succeeded without watch permission")
		}
		if !strings.Contains(strings.ToLower(err.Error()), "forbidden") {
			t.Errorf("the error hides the Forbidden watch")
		}
		if strings.Contains(err.Error(), "nobody approved it") {
			t.Errorf("the error blames the approver for a watch the client may not make")
		}
		assertNoRequests(t, h.cm, h.auto)
	})

	// The caller gave up (client gone, server shutting down): that is not
	// a timeout.
	t.Run("cancel is not a timeout", func(t *testing.T) {
		i := h.issuer(t, h.manual, DefaultIssuerName, nil)
		ictx, cancel := context.WithCancel(ctx)
		time.AfterFunc(time.Second, cancel)
		_, err := i.Issue(ictx, req)
		t.Logf("Issue: %v", err)
		if err == nil {
			t.Fatal("Issue succeeded without approval")
		}
		if !errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("a cancelled issuance is reported as a deadline: errors.Is(Canceled)=%v, errors.Is(DeadlineExceeded)=%v",
				errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded))
		}
		assertNoRequests(t, h.cm, h.manual)
	})
}

// userClient is a cert-manager client of a new user granted rules in
// namespace auto alone.
func userClient(t *testing.T, h *cmEnv, user string, rules []rbacv1.PolicyRule) cmclient.Interface {
	t.Helper()
	ctx := context.Background()
	if _, err := h.env.Clientset.RbacV1().Roles(h.auto).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		Rules:      rules,
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.env.Clientset.RbacV1().RoleBindings(h.auto).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: user},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: user}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := h.env.AddUser(envtest.User{Name: user}, h.env.Config)
	if err != nil {
		t.Fatal(err)
	}
	return cmclient.NewForConfigOrDie(u.Config())
}

// waitIssuerNotReady waits until cert-manager's issuers (ns set) or
// clusterissuers (ns empty) controller has set the issuer's Ready condition
// to False and returns that condition.
func waitIssuerNotReady(t *testing.T, cm cmclient.Interface, ns, name string) cmapi.IssuerCondition {
	t.Helper()
	get := func() (*cmapi.IssuerStatus, error) {
		if ns == "" {
			ci, err := cm.CertmanagerV1().ClusterIssuers().Get(context.Background(), name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			return &ci.Status, nil
		}
		iss, err := cm.CertmanagerV1().Issuers(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		return &iss.Status, nil
	}
	var last []cmapi.IssuerCondition
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		st, err := get()
		if err != nil {
			t.Fatal(err)
		}
		last = st.Conditions
		for _, c := range last {
			if c.Type == cmapi.IssuerConditionReady && c.Status == cmmeta.ConditionFalse {
				return c
			}
		}
	}
	t.Fatalf("issuer %q (namespace %q) not Ready=False within 30s; conditions %+v", name, ns, last)
	return cmapi.IssuerCondition{}
}

// TestClusterIssuerNotReadySaysWhy: a ClusterIssuer whose CA Secret is
// missing from cert-manager's namespace is read cluster-wide, and its
// Ready condition says which Secret, in the timeout's error. cert-manager's
// own clusterissuers, approver and CA issuer controllers.
func TestClusterIssuerNotReadySaysWhy(t *testing.T) {
	_, cm, _, fsmNS := startClusterEnv(t)
	ctx := context.Background()
	if _, err := cm.CertmanagerV1().ClusterIssuers().Create(ctx, &cmapi.ClusterIssuer{
		ObjectMeta: metav1.ObjectMeta{Name: "mesh-root"},
		Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "mesh-root-ca"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cond := waitIssuerNotReady(t, cm, "", "mesh-root")
	i, err := New(Options{IssuerName: "mesh-root", IssuerKind: "ClusterIssuer", IssuerGroup: DefaultIssuerGroup, Namespace: fsmNS, Client: cm})
	if err != nil {
		t.Fatal(err)
	}
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = i.Issue(ictx, certs.Request{CommonName: "x.svc", DNSNames: []string{"x.svc"}, Validity: time.Hour, Usage: certs.UsageServer, KeyAlgorithm: certs.ECDSAP256})
	t.Logf("Issue: %v", err)
	if err == nil || !strings.Contains(err.Error(), "reason Pending: "+issuerNotReadyMessage) {
		t.Fatalf("err = %v, want the request's own Pending condition", err)
	}
	want := fmt.Sprintf("; ClusterIssuer mesh-root Ready=False reason %s: %s): ", cond.Reason, cond.Message)
	if !strings.Contains(err.Error(), want) {
		t.Errorf("the error lacks the ClusterIssuer's Ready condition %q", want)
	}
	if !strings.Contains(err.Error(), `"mesh-root-ca"`) {
		t.Errorf("the error does not name the missing CA Secret mesh-root-ca")
	}
}

// TestHeldByIssuer: only a request cert-manager holds for a cert-manager.io
// issuer that is not Ready leads to reading the issuer; a request signed,
// not yet approved, or held for another reason costs no API read.
func TestHeldByIssuer(t *testing.T) {
	ready := func(status cmmeta.ConditionStatus, reason, msg string) *cmapi.CertificateRequest {
		return &cmapi.CertificateRequest{Status: cmapi.CertificateRequestStatus{Conditions: []cmapi.CertificateRequestCondition{
			{Type: cmapi.CertificateRequestConditionApproved, Status: cmmeta.ConditionTrue, Reason: "cert-manager.io"},
			{Type: cmapi.CertificateRequestConditionReady, Status: status, Reason: reason, Message: msg},
		}}}
	}
	own := &Issuer{opts: Options{IssuerName: "x", IssuerKind: "Issuer", IssuerGroup: DefaultIssuerGroup}}
	external := &Issuer{opts: Options{IssuerName: "x", IssuerKind: "AWSPCAIssuer", IssuerGroup: "awspca.cert-manager.io"}}
	for _, tc := range []struct {
		name string
		i    *Issuer
		cr   *cmapi.CertificateRequest
		want bool
	}{
		{"issuer not Ready", own, ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending, issuerNotReadyMessage), true},
		{"issued", own, ready(cmmeta.ConditionTrue, cmapi.CertificateRequestReasonIssued, "Certificate fetched from issuer successfully"), false},
		{"issuer not found", own, ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending, `Referenced "Issuer" not found`), false},
		{"failed", own, ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonFailed, issuerNotReadyMessage), false},
		{"no conditions", own, &cmapi.CertificateRequest{}, false},
		{"external issuer", external, ready(cmmeta.ConditionFalse, cmapi.CertificateRequestReasonPending, issuerNotReadyMessage), false},
	} {
		if got := tc.i.heldByIssuer(tc.cr); got != tc.want {
			t.Errorf("%s: heldByIssuer = %v, want %v", tc.name, got, tc.want)
		}
	}
}
