package certmanager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	cmapi "github.com/cert-manager/cert-manager/pkg/apis/certmanager/v1"
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
	// status condition", so our error is all that tells which one.
	t.Run("issuer not Ready names the issuer", func(t *testing.T) {
		if _, err := h.cm.CertmanagerV1().Issuers(h.auto).Create(ctx, &cmapi.Issuer{
			ObjectMeta: metav1.ObjectMeta{Name: "not-ready"},
			Spec:       cmapi.IssuerSpec{IssuerConfig: cmapi.IssuerConfig{CA: &cmapi.CAIssuer{SecretName: "no-such-secret"}}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		i := h.issuer(t, h.auto, "not-ready", nil)
		ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_, err := i.Issue(ictx, req)
		t.Logf("Issue: %v", err)
		if err == nil || !strings.Contains(err.Error(), "IssuerNotReady") && !strings.Contains(err.Error(), "does not have a Ready status condition") {
			t.Fatalf("err = %v, want the Pending reason", err)
		}
		if !strings.Contains(err.Error(), `Issuer "not-ready"`) {
			t.Errorf("the error does not name the issuer (Issuer \"not-ready\") the request waited on")
		}
		assertNoRequests(t, h.cm, h.auto)
	})

	// A client that may create CertificateRequests but not watch them (a
	// hand-written Role, an expired token: Forbidden/Unauthorized on the
	// watch). RetryWatcher hands the Forbidden status over as a watch.Error
	// event and closes: that status is the error, not a timeout blaming
	// the approver for a request cert-manager signed.
	t.Run("watch forbidden is reported as forbidden", func(t *testing.T) {
		if _, err := h.env.Clientset.RbacV1().Roles(h.auto).Create(ctx, &rbacv1.Role{
			ObjectMeta: metav1.ObjectMeta{Name: "no-watch"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"cert-manager.io"}, Resources: []string{"certificaterequests"}, Verbs: []string{"create", "get", "list", "delete"}},
				{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
			},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := h.env.Clientset.RbacV1().RoleBindings(h.auto).Create(ctx, &rbacv1.RoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-watch"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "no-watch"},
			Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "fsm-webhooks-nowatch"}},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		u, err := h.env.AddUser(envtest.User{Name: "fsm-webhooks-nowatch"}, h.env.Config)
		if err != nil {
			t.Fatal(err)
		}
		i := h.issuer(t, h.auto, DefaultIssuerName, cmclient.NewForConfigOrDie(u.Config()))
		// A hang guard: the refused watch ends Issue at once, and a
		// deadline reached first would hide it behind a timeout.
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		_, err = i.Issue(ictx, req)
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
