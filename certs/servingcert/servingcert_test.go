package servingcert_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

var spec = servingcert.Spec{SecretName: fsmnames.ValidatorCertSecret, Namespace: "fsm-system", ServiceName: fsmnames.ValidatorService}

func TestSpecRequest(t *testing.T) {
	r := spec.Request()
	svc := fsmnames.ValidatorService
	if r.CommonName != svc+".fsm-system.svc" {
		t.Errorf("CN = %q", r.CommonName)
	}
	want := []string{svc + ".fsm-system.svc"} // only what FSM asked for (a Vault role written for it refuses more)
	if strings.Join(r.DNSNames, ",") != strings.Join(want, ",") {
		t.Errorf("DNSNames = %v, want %v", r.DNSNames, want)
	}
	if r.Validity != 87600*time.Hour {
		t.Errorf("Validity = %s", r.Validity)
	}
	withIP := spec
	withIP.URLHost = "127.0.0.1"
	if r := withIP.Request(); len(r.IPAddresses) != 1 || r.IPAddresses[0].String() != "127.0.0.1" || len(r.DNSNames) != 1 {
		t.Errorf("URL host IP: DNS %v IP %v", r.DNSNames, r.IPAddresses)
	}
	withName := spec
	withName.URLHost = "webhooks.example.com"
	if r := withName.Request(); len(r.DNSNames) != 2 || r.DNSNames[1] != "webhooks.example.com" || withName.ServerName() != "webhooks.example.com" {
		t.Errorf("URL host name: DNS %v", r.DNSNames)
	}
}

func TestSpecValidate(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(*servingcert.Spec)
		wantErr string
	}{
		{"ok", func(*servingcert.Spec) {}, ""},
		{"empty secret", func(s *servingcert.Spec) { s.SecretName = "" }, "SecretName"},
		{"bad namespace", func(s *servingcert.Spec) { s.Namespace = "Bad_NS" }, `Namespace "Bad_NS"`},
		{"bad url host", func(s *servingcert.Spec) { s.URLHost = "not a host" }, `URLHost "not a host"`},
		{"ipv6 url host", func(s *servingcert.Spec) { s.URLHost = "::1" }, ""},
		{"negative validity", func(s *servingcert.Spec) { s.Validity = -time.Second }, "Validity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := spec
			tc.mutate(&s)
			err := s.Validate()
			if tc.wantErr == "" && err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want it to mention %q", err, tc.wantErr)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	other := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted, _ := ca.CABundle(context.Background())
	good := certstest.ServingSecretData(t, ca, spec)
	with := func(m map[string][]byte, k string, v []byte) map[string][]byte {
		out := map[string][]byte{}
		for kk, vv := range m {
			out[kk] = vv
		}
		out[k] = v
		return out
	}
	// What earlier releases issued: the Service's short names as well.
	earlierReq := spec.Request()
	earlierReq.DNSNames = append(earlierReq.DNSNames, fsmnames.ValidatorService, fsmnames.ValidatorService+".fsm-system")
	earlierCert, err := ca.Issue(context.Background(), earlierReq)
	if err != nil {
		t.Fatal(err)
	}
	earlier := with(good, servingcert.KeyCert, earlierCert.CertPEM)
	earlier[servingcert.KeyKey] = earlierCert.KeyPEM
	otherSvc := spec
	otherSvc.ServiceName = fsmnames.InjectorService
	short := spec
	short.Validity = time.Hour
	shortCert := certstest.ServingSecretData(t, ca, short)
	now := time.Now()
	goodLeaf, err := certs.ParseCertsPEM(good[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	notBefore := goodLeaf[0].NotBefore

	cases := []struct {
		name    string
		spec    servingcert.Spec
		data    map[string][]byte
		trusted []byte
		at      time.Time
		want    servingcert.Reason
	}{
		{"good", spec, good, trusted, now, servingcert.ReasonNone},
		{"nil data", spec, nil, trusted, now, servingcert.ReasonMissing},
		{"no key", spec, with(good, servingcert.KeyKey, nil), trusted, now, servingcert.ReasonMissing},
		{"garbage cert", spec, with(good, servingcert.KeyCert, []byte("garbage")), trusted, now, servingcert.ReasonInvalid},
		{"garbage ca.crt", spec, with(good, servingcert.KeyCA, []byte("garbage")), trusted, now, servingcert.ReasonInvalid},
		// ca.crt is what the server proves its listener with and publishes:
		// one that parses but does not verify tls.crt must be repaired.
		{"ca.crt of another CA", spec, with(good, servingcert.KeyCA, mustBundle(t, other)), trusted, now, servingcert.ReasonInvalid},
		{"ca.crt of another CA beside", spec, with(good, servingcert.KeyCA, append(mustBundle(t, other), good[servingcert.KeyCA]...)), trusted, now, servingcert.ReasonNone},
		{"key of another cert", spec, with(good, servingcert.KeyKey, shortCert[servingcert.KeyKey]), trusted, now, servingcert.ReasonKeyPair},
		{"earlier release's names (a superset)", spec, earlier, trusted, now, servingcert.ReasonNone},
		{"other service", otherSvc, good, trusted, now, servingcert.ReasonNames},
		{"url host added", func() servingcert.Spec { s := spec; s.URLHost = "127.0.0.1"; return s }(), good, trusted, now, servingcert.ReasonNames},
		{"CA replaced", spec, good, mustBundle(t, other), now, servingcert.ReasonUntrusted},
		{"CA added beside", spec, good, append(append([]byte{}, trusted...), mustBundle(t, other)...), now, servingcert.ReasonNone},
		{"expired", spec, good, trusted, now.Add(25 * time.Hour), servingcert.ReasonExpiring},
		{"validity shortened", short, good, trusted, now, servingcert.ReasonValidity},
		{"short cert young", short, shortCert, trusted, now.Add(30 * time.Minute), servingcert.ReasonNone},
		{"short cert due", short, shortCert, trusted, now.Add(41 * time.Minute), servingcert.ReasonExpiring},
		// A CA whose clock runs ahead (cert-manager does not backdate).
		{"issued by a clock 2s ahead", spec, good, trusted, notBefore.Add(-2 * time.Second), servingcert.ReasonNone},
		{"issued by a clock ClockSkew ahead", spec, good, trusted, notBefore.Add(-certs.ClockSkew), servingcert.ReasonNone},
		{"not valid for another hour", spec, good, trusted, notBefore.Add(-time.Hour), servingcert.ReasonUntrusted},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := servingcert.Check(tc.spec, tc.data, tc.trusted, tc.at, 0)
			if v.Reason != tc.want {
				t.Fatalf("Check = %q (%s), want %q", v.Reason, v.Detail, tc.want)
			}
			if v.OK() && (v.RenewAt.IsZero() || !v.RenewAt.After(tc.at)) {
				t.Fatalf("good cert with RenewAt %s", v.RenewAt)
			}
			if !v.OK() && v.Detail == "" {
				t.Fatal("rejection without detail")
			}
		})
	}
}

// TestEnsureRepairsCACrt: a Secret whose ca.crt was replaced by another
// valid CA (tls.crt and tls.key untouched) is rewritten, with a reason that
// names the Secret and the key.
func TestEnsureRepairsCACrt(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	other := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted := mustBundle(t, ca)
	data := certstest.ServingSecretData(t, ca, spec)
	data[servingcert.KeyCA] = certs.EncodeCertsPEM(other.Active())

	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: spec.SecretName, Namespace: spec.Namespace}, Data: data}
	store := &servingcert.Store{Client: fake.NewClientset(sec), Issuer: ca, Log: logr.Discard()}
	out, err := store.Ensure(context.Background(), spec, trusted)
	if err != nil {
		t.Fatal(err)
	}
	if !out.Written || out.Reason != servingcert.ReasonInvalid {
		t.Fatalf("Ensure: written %v, reason %q (%s); want the Secret rewritten as %q", out.Written, out.Reason, out.Detail, servingcert.ReasonInvalid)
	}
	if name := spec.Namespace + "/" + spec.SecretName; !strings.Contains(out.Detail, name) || !strings.Contains(out.Detail, servingcert.KeyCA) {
		t.Errorf("reason %q names neither Secret %s nor key %s", out.Detail, name, servingcert.KeyCA)
	}
	if v := servingcert.Check(spec, out.Secret.Data, trusted, time.Now(), 0); !v.OK() {
		t.Errorf("rewritten Secret still rejected: %s", v.Detail)
	}
	// What was replaced is reported: the server keeps its root in the
	// caBundle for a while (webhooks.replacedRootKeep).
	if !bytes.Equal(out.Replaced[servingcert.KeyCert], data[servingcert.KeyCert]) || !bytes.Equal(out.Replaced[servingcert.KeyCA], data[servingcert.KeyCA]) {
		t.Error("Outcome.Replaced is not the data the write replaced")
	}
}

// TestCheckOverdue: an observer outside the servers (certs status) calls a
// cert due only at the end of its renewal window, whatever point of the
// window its own process would have picked.
func TestCheckOverdue(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted, _ := ca.CABundle(context.Background())
	short := spec
	short.Validity = time.Hour
	data := certstest.ServingSecretData(t, ca, short)
	leaf, err := certs.ParseCertsPEM(data[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	earliest, latest := certs.Renewal{}.Window(leaf[0])
	for _, tc := range []struct {
		name string
		at   time.Time
		want servingcert.Reason
	}{
		{"before the window", earliest.Add(-time.Second), servingcert.ReasonNone},
		{"at the start of the window", earliest, servingcert.ReasonNone},
		{"just before its end", latest.Add(-time.Second), servingcert.ReasonNone},
		{"at its end", latest, servingcert.ReasonExpiring},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if v := servingcert.CheckOverdue(short, data, trusted, tc.at, 0); v.Reason != tc.want {
				t.Errorf("CheckOverdue at %s = %q (%s), want %q", tc.at.Sub(leaf[0].NotBefore), v.Reason, v.Detail, tc.want)
			}
		})
	}
	// A server's own Check is due somewhere in the window.
	if v := servingcert.Check(short, data, trusted, latest, 0); v.Reason != servingcert.ReasonExpiring {
		t.Errorf("Check at the end of the window = %q, want due", v.Reason)
	}
}

// TestCheckBackdatedLifetime: tresor backdates NotBefore by certs.ClockSkew
// (a peer's clock may run that far behind the signer's); that much lifetime
// more than the validity asked for is not "validity-changed", or a short
// serving-cert validity would be re-issued on every pass. A cert longer
// than asked by more is.
func TestCheckBackdatedLifetime(t *testing.T) {
	for _, tc := range []struct {
		name     string
		backdate time.Duration
		validity time.Duration
		want     servingcert.Reason
	}{
		{"10 min backdated ClockSkew", certs.ClockSkew, 10 * time.Minute, servingcert.ReasonNone},
		{"1 h backdated ClockSkew", certs.ClockSkew, time.Hour, servingcert.ReasonNone},
		{"10 min backdated 10 min", 10 * time.Minute, 10 * time.Minute, servingcert.ReasonValidity},
		// A tenth of the validity plus ClockSkew is tolerated, not more:
		// 66 min of life is kept, 72 min is not (the limit is 71).
		{"1 h backdated 6 min", 6 * time.Minute, time.Hour, servingcert.ReasonNone},
		{"1 h backdated 12 min", 12 * time.Minute, time.Hour, servingcert.ReasonValidity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour, Backdate: tc.backdate})
			s := spec
			s.Validity = tc.validity
			data := certstest.ServingSecretData(t, ca, s)
			v := servingcert.Check(s, data, mustBundle(t, ca), time.Now(), 0)
			if v.Reason != tc.want {
				t.Fatalf("Check = %q (%s), want %q", v.Reason, v.Detail, tc.want)
			}
		})
	}
}

// TestCheckGrantedLifetime: the renewal schedule follows the lifetime the CA
// granted (NotBefore to NotAfter), not the validity asked for, and the
// jitter moves it at most a tenth of that lifetime earlier. FSM's documented
// Vault role grants 24h (max_ttl) to a serving cert asked for 87600h and
// backdates NotBefore by 30s.
func TestCheckGrantedLifetime(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 87600 * time.Hour, MaxTTL: 24 * time.Hour, Backdate: 30 * time.Second})
	trusted := mustBundle(t, ca)
	data := certstest.ServingSecretData(t, ca, spec)
	chain, err := certs.ParseCertsPEM(data[servingcert.KeyCert])
	if err != nil {
		t.Fatal(err)
	}
	leaf := chain[0]
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < 24*time.Hour+29*time.Second || life > 24*time.Hour+31*time.Second {
		t.Fatalf("granted lifetime %s, want 24h30s", life)
	}
	// 2/3 of 24h30s after NotBefore is 16h0m20s; a tenth of it earlier,
	// 13h36m17s, is the earliest the jitter may choose.
	due := certs.Renewal{}.At(leaf)
	if d := due.Sub(leaf.NotBefore); d < 13*time.Hour+36*time.Minute+16*time.Second || d > 16*time.Hour+20*time.Second+time.Second {
		t.Fatalf("due %s after NotBefore, want within [13h36m17s, 16h0m20s]", d)
	}
	dueHalf := certs.Renewal{Fraction: 0.5}.At(leaf)
	issued := leaf.NotBefore.Add(30 * time.Second)
	for _, tc := range []struct {
		name     string
		at       time.Time
		fraction float64
		want     servingcert.Reason
		renewAt  time.Time
	}{
		{"just issued", issued, 0, servingcert.ReasonNone, due},
		{"a minute before due", due.Add(-time.Minute), 0, servingcert.ReasonNone, due},
		{"due", due, 0, servingcert.ReasonExpiring, time.Time{}},
		{"an hour before expiry", leaf.NotAfter.Add(-time.Hour), 0, servingcert.ReasonExpiring, time.Time{}},
		{"expired", leaf.NotAfter, 0, servingcert.ReasonExpiring, time.Time{}},
		{"half, not yet", dueHalf.Add(-time.Second), 0.5, servingcert.ReasonNone, dueHalf},
		{"half, due", dueHalf, 0.5, servingcert.ReasonExpiring, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// spec asks for 87600h: a cert shorter than asked is not
			// "validity-changed", only a longer one is.
			v := servingcert.Check(spec, data, trusted, tc.at, tc.fraction)
			if v.Reason != tc.want {
				t.Fatalf("Check at %s = %q (%s), want %q", tc.at.Sub(issued), v.Reason, v.Detail, tc.want)
			}
			if !v.RenewAt.Equal(tc.renewAt) {
				t.Fatalf("RenewAt = %s, want %s", v.RenewAt, tc.renewAt)
			}
		})
	}
}

func mustBundle(t *testing.T, ca *certstest.CA) []byte {
	t.Helper()
	b, err := ca.CABundle(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMergeBundles(t *testing.T) {
	day := certstest.Options{RootValidity: 24 * time.Hour}
	a, b := mustBundle(t, certstest.MustNew(t, day)), mustBundle(t, certstest.MustNew(t, day))
	now := time.Now()
	ab, err := servingcert.MergeBundles(now, a, b)
	if err != nil {
		t.Fatal(err)
	}
	ba, err := servingcert.MergeBundles(now, b, a, a, []byte("\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ab, ba) {
		t.Error("merge depends on input order or duplicates")
	}
	if n := bytes.Count(ab, []byte("BEGIN CERTIFICATE")); n != 2 {
		t.Errorf("merged %d certs, want 2", n)
	}
	// Expired roots are pruned.
	only, err := servingcert.MergeBundles(now.Add(48*time.Hour), a)
	if err == nil {
		t.Errorf("expired-only bundle merged into %q", only)
	}
	// A key block among certs is ignored; corrupt certs are an error.
	withKey := append(append([]byte{}, a...), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})...)
	if _, err := servingcert.MergeBundles(now, withKey); err != nil {
		t.Errorf("non-cert block: %v", err)
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")})
	if _, err := servingcert.MergeBundles(now, a, bad); err == nil || !strings.Contains(err.Error(), "CA bundle 2") {
		t.Errorf("corrupt cert: err %v", err)
	}
	if _, err := servingcert.MergeBundles(now); err == nil {
		t.Error("empty merge succeeded")
	}
}

func TestIssuingRoots(t *testing.T) {
	ca, other := certstest.MustNew(t, certstest.Options{}), certstest.MustNew(t, certstest.Options{})
	data := certstest.ServingSecretData(t, ca, spec)
	leaf, _ := certs.ParseCertsPEM(data[servingcert.KeyCert])
	both := append(mustBundle(t, other), mustBundle(t, ca)...)
	roots, err := servingcert.IssuingRoots(leaf, both, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(roots, mustBundle(t, ca)) {
		t.Error("IssuingRoots kept a root the leaf does not chain to")
	}
	if _, err := servingcert.IssuingRoots(leaf, mustBundle(t, other), time.Now()); err == nil {
		t.Error("no error for a bundle that does not verify the leaf")
	}
	// Issued by a CA whose clock runs ahead of ours (cert-manager does not
	// backdate): within ClockSkew the root is found, beyond it the error
	// says why.
	if roots, err := servingcert.IssuingRoots(leaf, both, leaf[0].NotBefore.Add(-2*time.Second)); err != nil || !bytes.Equal(roots, mustBundle(t, ca)) {
		t.Errorf("a leaf valid 2s from now: IssuingRoots = %q, %v", roots, err)
	}
	if _, err := servingcert.IssuingRoots(leaf, both, leaf[0].NotBefore.Add(-time.Hour)); err == nil || !strings.Contains(err.Error(), "not yet valid") {
		t.Errorf("a leaf valid an hour from now: err = %v, want it to say the leaf is not yet valid", err)
	}
}

func FuzzCheck(f *testing.F) {
	ca, err := certstest.New(context.Background(), certstest.Options{RootValidity: time.Hour})
	if err != nil {
		f.Fatal(err)
	}
	c, err := ca.Issue(context.Background(), spec.Request())
	if err != nil {
		f.Fatal(err)
	}
	trusted, _ := ca.CABundle(context.Background())
	f.Add(trusted, c.CertPEM, c.KeyPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), []byte{}, []byte("x"))
	f.Fuzz(func(t *testing.T, caPEM, certPEM, keyPEM []byte) {
		v := servingcert.Check(spec, map[string][]byte{servingcert.KeyCA: caPEM, servingcert.KeyCert: certPEM, servingcert.KeyKey: keyPEM}, trusted, time.Now(), 0)
		if !v.OK() && v.Detail == "" {
			t.Fatal("rejection without detail")
		}
		_, _ = servingcert.MergeBundles(time.Now(), caPEM, certPEM)
	})
}

// TestRenewSurvivesMetadataConflict: a forced renewal whose first write
// loses to a label edit (same cert, new resourceVersion) still replaces the
// cert; one whose first write loses to another writer's new cert keeps it.
func TestRenewSurvivesMetadataConflict(t *testing.T) {
	for _, tc := range []struct {
		name     string
		racer    func(sec *corev1.Secret, ca *certstest.CA)
		wantKeep bool
	}{
		{"label edit", func(sec *corev1.Secret, _ *certstest.CA) { sec.Labels = map[string]string{"team": "mesh"} }, false},
		{"another writer renewed", func(sec *corev1.Secret, ca *certstest.CA) {
			for k, v := range certstest.ServingSecretData(t, ca, spec) {
				sec.Data[k] = v
			}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
			trusted := mustBundle(t, ca)
			sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: spec.SecretName, Namespace: spec.Namespace, ResourceVersion: "1"}, Data: certstest.ServingSecretData(t, ca, spec)}
			orig := bytes.Clone(sec.Data[servingcert.KeyCert])
			cs := fake.NewClientset(sec)
			raced := false
			var racedCert []byte
			cs.PrependReactor("update", "secrets", func(action k8stesting.Action) (bool, runtime.Object, error) {
				if raced {
					return false, nil, nil
				}
				raced = true
				// Another writer's change lands first: store it and refuse
				// ours as the apiserver would.
				cur, err := cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("secrets"), spec.Namespace, spec.SecretName)
				if err != nil {
					return true, nil, err
				}
				next := cur.(*corev1.Secret).DeepCopy()
				tc.racer(next, ca)
				next.ResourceVersion = "2"
				racedCert = bytes.Clone(next.Data[servingcert.KeyCert])
				if err := cs.Tracker().Update(corev1.SchemeGroupVersion.WithResource("secrets"), next, spec.Namespace); err != nil {
					return true, nil, err
				}
				return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), spec.SecretName, errors.New("the object has been modified"))
			})
			store := &servingcert.Store{Client: cs, Issuer: ca, Log: logr.Discard()}
			out, err := store.Renew(context.Background(), spec, trusted)
			if err != nil {
				t.Fatal(err)
			}
			if !raced {
				t.Fatal("Renew wrote nothing: the race never ran")
			}
			got := out.Secret.Data[servingcert.KeyCert]
			switch {
			case tc.wantKeep && (out.Written || !bytes.Equal(got, racedCert)):
				t.Errorf("written %v: want the other writer's new cert kept", out.Written)
			case !tc.wantKeep && (!out.Written || bytes.Equal(got, orig)):
				t.Errorf("written %v, cert replaced %v: a label edit dropped the requested renewal", out.Written, !bytes.Equal(got, orig))
			}
		})
	}
}
