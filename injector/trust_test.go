package injector

import (
	"bytes"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// TestPlanTrust: cacert.pem follows the mesh bundle through every phase of a
// rotation; only a certificate the retiring root signed is re-issued, with its
// CN and key algorithm; anything that cannot be proven ours is refused.
func TestPlanTrust(t *testing.T) {
	now := time.Now()
	root := func() *certs.Authority {
		a, err := certs.NewRootAuthority(certs.ECDSAP256, 24*time.Hour, now)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	oldRoot, newRoot, stranger := root(), root(), root()
	const cn = "u1.sidecar.web.app.cluster.local"
	issue := func(a *certs.Authority, cn string) []byte {
		key, err := certs.GenerateKey(certs.ECDSAP384)
		if err != nil {
			t.Fatal(err)
		}
		c, err := a.Issue(certRequest(cn, certs.ECDSAP384, time.Hour), key, nil, now)
		if err != nil {
			t.Fatal(err)
		}
		return c.CertPEM
	}
	byOld, byNew := issue(oldRoot, cn), issue(newRoot, cn)
	const otherDomainCN = "u1.sidecar.web.app.mesh.example"
	pem := func(as ...*certs.Authority) []byte {
		var out []byte
		for _, a := range as {
			out = append(out, certs.EncodeCertsPEM(a.Cert)...)
		}
		return out
	}
	bundle := func(as ...*certs.Authority) *certs.Bundle {
		b, err := certs.ParseBundle(now, pem(as...))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	secret := func(ns, uuid string, caPEM, certPEM []byte) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: BootstrapSecretName("u1"), Labels: map[string]string{ProxyUUIDLabel: uuid}},
			Data:       map[string][]byte{CACertKey: caPEM, RepoCertKey: certPEM, RepoKeyKey: []byte("key")},
		}
	}
	app := func(caPEM, certPEM []byte) *corev1.Secret { return secret("app", "u1", caPEM, certPEM) }
	idle := TrustState{Bundle: bundle(oldRoot)}
	added := TrustState{Bundle: bundle(oldRoot, newRoot)}
	active := TrustState{Bundle: bundle(oldRoot, newRoot), Retiring: oldRoot.Cert}
	done := TrustState{Bundle: bundle(newRoot)}

	for _, tc := range []struct {
		name        string
		secret      *corev1.Secret
		state       TrustState
		domain      string        // the trust domain; "" for the default
		wantCA      *certs.Bundle // nil: cacert.pem left as is
		wantReissue bool
		wantErr     string
	}{
		{name: "idle, up to date", secret: app(pem(oldRoot), byOld), state: idle},
		{name: "next root added: cacert.pem gets both, old root still signs", secret: app(pem(oldRoot), byOld), state: added, wantCA: bundle(oldRoot, newRoot)},
		{name: "same roots in another order: left alone", secret: app(pem(newRoot, oldRoot), byOld), state: added},
		{name: "next root active: the old root's certificate is re-issued", secret: app(pem(oldRoot, newRoot), byOld), state: active, wantCA: bundle(oldRoot, newRoot), wantReissue: true},
		{name: "next root active, Secret of phase 1: both at once", secret: app(pem(oldRoot), byOld), state: active, wantCA: bundle(oldRoot, newRoot), wantReissue: true},
		{name: "next root active, already re-issued", secret: app(pem(oldRoot, newRoot), byNew), state: active},
		{name: "retiring root already out of the bundle: still re-issued", secret: app(pem(oldRoot, newRoot), byOld), state: TrustState{Bundle: bundle(newRoot), Retiring: oldRoot.Cert}, wantCA: bundle(newRoot), wantReissue: true},
		{name: "old root dropped: cacert.pem holds the new root only", secret: app(pem(oldRoot, newRoot), byNew), state: done, wantCA: bundle(newRoot)},
		{name: "cacert.pem missing", secret: app(nil, byNew), state: done, wantCA: bundle(newRoot)},
		{name: "cacert.pem broken", secret: app([]byte("junk"), byNew), state: done, wantCA: bundle(newRoot)},
		{name: "signed by a root the mesh never had: refused, cacert.pem still fixed", secret: app(pem(oldRoot), issue(stranger, cn)), state: active, wantCA: bundle(oldRoot, newRoot),
			wantErr: `repo_cert.pem "u1.sidecar.web.app.cluster.local" was signed by none of the mesh's 2 root(s)`},
		{name: "CA replaced abruptly (old root unknown): refused", secret: app(pem(oldRoot), byOld), state: done, wantCA: bundle(newRoot), wantErr: "signed by none"},
		{name: "Secret copied into another namespace: never re-issued there", secret: secret("other", "u1", pem(oldRoot, newRoot), byOld), state: active,
			wantErr: `CN "u1.sidecar.web.app.cluster.local" is not u1.sidecar.<serviceaccount>.other.cluster.local`},
		// FSM's injector signed it for a pod with ServiceAccount bookstore.bookbuyer
		// in namespace app; FSM's control plane reads bookstore of bookbuyer.
		{name: "ServiceAccount with a dot: never re-issued, cacert.pem still fixed", secret: app(pem(oldRoot), issue(oldRoot, "u1.sidecar.bookstore.bookbuyer.app.cluster.local")), state: active,
			wantCA: bundle(oldRoot, newRoot), wantErr: `CN "u1.sidecar.bookstore.bookbuyer.app.cluster.local": spec.serviceAccountName "bookstore.bookbuyer": a ServiceAccount name with a dot cannot be meshed`},
		{name: "uuid label does not match the name", secret: secret("app", "u2", pem(oldRoot, newRoot), byOld), state: active, wantCA: nil,
			wantErr: `label fsm-proxy-uuid="u2" does not match the name (want sidecar-bootstrap-config-u2)`},
		{name: "repo_cert.pem broken", secret: app(pem(oldRoot), []byte("junk")), state: idle, wantErr: "app/sidecar-bootstrap-config-u1: repo_cert.pem"},
		{name: "custom trust domain: re-issued with its CN", secret: app(pem(oldRoot, newRoot), issue(oldRoot, otherDomainCN)), state: active, domain: "mesh.example", wantCA: bundle(oldRoot, newRoot), wantReissue: true},
		{name: "default trust domain's CN under a custom one: never re-issued", secret: app(pem(oldRoot, newRoot), byOld), state: active, domain: "mesh.example",
			wantErr: `CN "u1.sidecar.web.app.cluster.local" is not u1.sidecar.<serviceaccount>.app.mesh.example`},
		{name: "CN without a ServiceAccount: never re-issued", secret: app(pem(oldRoot, newRoot), issue(oldRoot, "u1.sidecar..app.cluster.local")), state: active,
			wantErr: `CN "u1.sidecar..app.cluster.local" is not u1.sidecar.<serviceaccount>.app.cluster.local`},
		{name: "empty uuid label: never re-issued", secret: &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: BootstrapSecretName(""), Labels: map[string]string{ProxyUUIDLabel: ""}},
			Data:       map[string][]byte{CACertKey: pem(oldRoot, newRoot), RepoCertKey: issue(oldRoot, ".sidecar.web.app.cluster.local")},
		}, state: active, wantErr: `CN ".sidecar.web.app.cluster.local" is not .sidecar.<serviceaccount>.app.cluster.local`},
		{name: "no trust bundle", secret: app(pem(oldRoot), byOld), state: TrustState{Retiring: oldRoot.Cert}, wantErr: "the mesh trust bundle is empty"},
		{name: "empty trust bundle", secret: app(pem(oldRoot), byOld), state: TrustState{Bundle: certs.NewBundle(now)}, wantErr: "the mesh trust bundle is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const validity = 90 * time.Minute
			plan, err := PlanTrust(tc.secret, tc.state, tc.domain, validity, now)
			if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.wantCA == nil != (plan.CACert == nil) || tc.wantCA != nil && !bytes.Equal(plan.CACert, tc.wantCA.PEM()) {
				t.Errorf("cacert.pem %q, want %d root(s)", plan.CACert, lenOf(tc.wantCA))
			}
			if plan.Reissue != tc.wantReissue {
				t.Fatalf("reissue %v, want %v (%s)", plan.Reissue, tc.wantReissue, plan.Reason)
			}
			if plan.Changes() != (plan.CACert != nil || plan.Reissue) {
				t.Error("Changes disagrees with the plan")
			}
			if !plan.Reissue {
				return
			}
			wantCN := cn
			if tc.domain != "" {
				wantCN = otherDomainCN
			}
			if plan.Request.CommonName != wantCN || plan.Request.KeyAlgorithm != certs.ECDSAP384 || plan.Request.Validity != validity ||
				plan.Request.Organization != sidecarCertOrganization || len(plan.Request.DNSNames) != 1 || plan.Request.DNSNames[0] != wantCN {
				t.Errorf("request %+v, want CN %s, ECDSA P-384, %s, the sidecar organization", plan.Request, wantCN, validity)
			}
		})
	}
}

func lenOf(b *certs.Bundle) int {
	if b == nil {
		return 0
	}
	return b.Len()
}

// TestSignedBy: through an intermediate, and telling apart two roots with
// the same subject.
func TestSignedBy(t *testing.T) {
	now := time.Now()
	a, _ := certs.NewRootAuthority(certs.ECDSAP256, time.Hour, now)
	b, _ := certs.NewRootAuthority(certs.ECDSAP256, time.Hour, now)
	key, _ := certs.GenerateKey(certs.ECDSAP256)
	// An intermediate CA signed by a: a leaf under it belongs to a, not b.
	interTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, interTmpl, a.Cert, key.Public(), a.Key)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(der)
	ia, err := certs.NewAuthority(inter, key)
	if err != nil {
		t.Fatal(err)
	}
	leafKey, _ := certs.GenerateKey(certs.ECDSAP256)
	leaf, err := ia.Sign(certRequest("x", "", time.Minute), leafKey.Public(), now)
	if err != nil {
		t.Fatal(err)
	}
	if !signedBy([]*x509.Certificate{leaf, inter}, a.Cert) {
		t.Error("leaf under a's intermediate not found signed by a")
	}
	if signedBy([]*x509.Certificate{leaf, inter}, b.Cert) {
		t.Error("leaf under a's intermediate found signed by b (same subject)")
	}
	if signedBy([]*x509.Certificate{leaf}, a.Cert) {
		t.Error("leaf without its intermediate found signed by a")
	}
}

// TestTrustPatch: only the planned keys, guarded by the resourceVersion read.
func TestTrustPatch(t *testing.T) {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "s", ResourceVersion: "7"}}
	cert := &certs.Certificate{CertPEM: []byte("cert"), KeyPEM: []byte("key")}
	for _, tc := range []struct {
		name string
		s    *corev1.Secret
		plan TrustPlan
		cert *certs.Certificate
		want string
	}{
		{"cacert.pem only", s, TrustPlan{CACert: []byte("ca")}, nil, `{"data":{"cacert.pem":"Y2E="},"metadata":{"resourceVersion":"7"}}`},
		{"re-issued", s, TrustPlan{CACert: []byte("ca"), Reissue: true}, cert,
			`{"data":{"cacert.pem":"Y2E=","repo_cert.pem":"Y2VydA==","repo_key.pem":"a2V5"},"metadata":{"resourceVersion":"7"}}`},
		// A merge patch's null would delete cacert.pem: a plan without one
		// leaves the key out.
		{"re-issued, cacert.pem unchanged", s, TrustPlan{Reissue: true}, cert, `{"data":{"repo_cert.pem":"Y2VydA==","repo_key.pem":"a2V5"},"metadata":{"resourceVersion":"7"}}`},
		{"no resourceVersion", &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: "s"}}, TrustPlan{CACert: []byte("ca")}, nil, "error: bootstrap Secret app/s: no resourceVersion"},
		{"re-issue without a certificate", s, TrustPlan{Reissue: true}, nil, "error: bootstrap Secret app/s: re-issue planned without a certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := TrustPatch(tc.s, tc.plan, tc.cert)
			if err != nil {
				got = []byte("error: " + err.Error())
			}
			if !strings.HasPrefix(string(got), tc.want) {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}
