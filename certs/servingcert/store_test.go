package servingcert_test

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// racingIssuer is another replica writing the Secret while this one
// issues: race runs (through the apiserver) before the first Issue answers.
type racingIssuer struct {
	certs.Issuer
	once sync.Once
	race func()
}

func (r *racingIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	if r.race != nil {
		r.once.Do(r.race)
	}
	return r.Issuer.Issue(ctx, req)
}

// keylessIssuer answers with a certificate and no key.
type keylessIssuer struct{ certs.Issuer }

func (k keylessIssuer) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	c, err := k.Issuer.Issue(ctx, req)
	if err != nil {
		return nil, err
	}
	c.KeyPEM = nil
	return c, nil
}

// TestStoreWrites: what Ensure leaves in the serving-cert Secret, and what
// it returns for the Source to serve at once, when the Secret is missing,
// holds a cert the mesh does not trust, or is written by another replica
// while this one issues.
func TestStoreWrites(t *testing.T) {
	env := testenv.Start(t, testenv.Options{})
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	// The mesh trusts a second root (a rotation's next one): ca.crt must
	// still hold only the root the cert chains to.
	if err := ca.AddNextRoot(context.Background()); err != nil {
		t.Fatal(err)
	}
	trusted := mustBundle(t, ca)
	foreign := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})

	const (
		writes  = "writes"  // this replica's new cert is stored
		adopts  = "adopts"  // the other replica's cert is stored and returned
		refuses = "refuses" // an error; the Secret is as it was
	)
	for _, tc := range []struct {
		name string
		// before is the Secret's data (nil: no Secret) and extra labels.
		before func(servingcert.Spec) map[string][]byte
		labels map[string]string
		// racer is what another replica writes while this one issues.
		racer  func(t *testing.T, s servingcert.Spec, sec *corev1.Secret) *corev1.Secret
		issuer func(certs.Issuer) certs.Issuer
		want   string
		reason servingcert.Reason
	}{{
		name: "a missing Secret is created", want: writes, reason: servingcert.ReasonMissing,
	}, {
		name:   "a cert from another CA is replaced, the Secret's other keys and labels kept",
		before: withExtraKey(fromCA(t, foreign)), labels: map[string]string{"team": "mesh"},
		want: writes, reason: servingcert.ReasonUntrusted,
	}, {
		name: "a Secret another replica creates while this one issues is adopted",
		racer: func(t *testing.T, s servingcert.Spec, _ *corev1.Secret) *corev1.Secret {
			return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.SecretName}, Data: certstest.ServingSecretData(t, ca, s)}
		},
		want: adopts,
	}, {
		name: "a cert another replica re-issues while this one issues is adopted", before: fromCA(t, foreign),
		racer: func(t *testing.T, s servingcert.Spec, sec *corev1.Secret) *corev1.Secret {
			sec.Data = certstest.ServingSecretData(t, ca, s)
			return sec
		},
		want: adopts,
	}, {
		name:   "an issuer answering without a key writes nothing",
		issuer: func(i certs.Issuer) certs.Issuer { return keylessIssuer{i} },
		want:   refuses,
	}, {
		name: "an issuer answering without a key leaves a bad cert as it is", before: fromCA(t, foreign),
		issuer: func(i certs.Issuer) certs.Issuer { return keylessIssuer{i} },
		want:   refuses,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			ns, err := env.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "servingcert-"}}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s := spec
			s.Namespace = ns.Name
			secrets := env.Clientset.CoreV1().Secrets(s.Namespace)
			var before *corev1.Secret
			var beforeData map[string][]byte
			if tc.before != nil {
				beforeData = tc.before(s)
				before, err = secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: s.SecretName, Labels: tc.labels}, Data: beforeData}, metav1.CreateOptions{})
				if err != nil {
					t.Fatal(err)
				}
			}
			issuer := &racingIssuer{Issuer: ca}
			var raced *corev1.Secret
			if tc.racer != nil {
				issuer.race = func() {
					sec := tc.racer(t, s, before.DeepCopy())
					if before == nil {
						raced, err = secrets.Create(ctx, sec, metav1.CreateOptions{})
					} else {
						raced, err = secrets.Update(ctx, sec, metav1.UpdateOptions{})
					}
					if err != nil {
						t.Errorf("the other replica's write: %v", err)
					}
				}
			}
			var iss certs.Issuer = issuer
			if tc.issuer != nil {
				iss = tc.issuer(issuer)
			}
			out, err := (&servingcert.Store{Client: env.Clientset, Issuer: iss, Log: logr.Discard()}).Ensure(ctx, s, trusted)
			stored, getErr := secrets.Get(ctx, s.SecretName, metav1.GetOptions{})
			if getErr != nil && !apierrors.IsNotFound(getErr) {
				t.Fatal(getErr)
			}

			if tc.want == refuses {
				if err == nil {
					t.Fatalf("Ensure wrote %v with an issuer's unusable answer, want an error", out.Written)
				}
				if before == nil && getErr == nil {
					t.Fatal("the Secret was created from an unusable answer")
				}
				if before != nil && stored.ResourceVersion != before.ResourceVersion {
					t.Fatal("the Secret was written from an unusable answer")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if getErr != nil {
				t.Fatal(getErr)
			}
			// What Ensure returns is what the Source serves at once: it
			// must be the version the apiserver holds.
			if out.Secret == nil || out.Secret.ResourceVersion != stored.ResourceVersion || !bytes.Equal(out.Secret.Data[servingcert.KeyCert], stored.Data[servingcert.KeyCert]) {
				t.Fatalf("Ensure returned a Secret other than the one stored (resourceVersion %v, stored %s)", out.Secret, stored.ResourceVersion)
			}
			if tc.want == adopts {
				if out.Written || !bytes.Equal(stored.Data[servingcert.KeyCert], raced.Data[servingcert.KeyCert]) {
					t.Errorf("written %v, stored cert the other replica's %v: want the other replica's cert kept",
						out.Written, bytes.Equal(stored.Data[servingcert.KeyCert], raced.Data[servingcert.KeyCert]))
				}
				return
			}
			if !out.Written || out.Reason != tc.reason {
				t.Errorf("written %v, reason %q (%s); want written as %q", out.Written, out.Reason, out.Detail, tc.reason)
			}
			if v := servingcert.Check(s, stored.Data, trusted, time.Now(), 0); !v.OK() {
				t.Errorf("the stored cert fails its check: %s: %s", v.Reason, v.Detail)
			}
			if got, want := stored.Data[servingcert.KeyCA], certs.EncodeCertsPEM(ca.Active()); !bytes.Equal(got, want) {
				t.Errorf("%s holds %d bytes, want only the issuing root (%d bytes)", servingcert.KeyCA, len(got), len(want))
			}
			for k, v := range beforeData {
				if k == servingcert.KeyCA || k == servingcert.KeyCert || k == servingcert.KeyKey {
					continue
				}
				if !bytes.Equal(stored.Data[k], v) {
					t.Errorf("the Secret's key %q was dropped or changed", k)
				}
			}
			for k, v := range tc.labels {
				if stored.Labels[k] != v {
					t.Errorf("the Secret's label %s=%s was dropped", k, v)
				}
			}
			if before == nil {
				if stored.Labels["app.kubernetes.io/component"] != "webhook-serving-cert" || stored.Labels["app.kubernetes.io/name"] != "flomesh.io" || stored.Type != corev1.SecretTypeOpaque {
					t.Errorf("created Secret: labels %v, type %s", stored.Labels, stored.Type)
				}
				if out.Replaced != nil {
					t.Errorf("a created Secret replaced %d keys", len(out.Replaced))
				}
			} else if !bytes.Equal(out.Replaced[servingcert.KeyCert], beforeData[servingcert.KeyCert]) || !bytes.Equal(out.Replaced[servingcert.KeyCA], beforeData[servingcert.KeyCA]) {
				t.Error("Replaced is not the cert the write replaced")
			}
		})
	}
}

// fromCA is a Secret's data: a cert from ca for the spec.
func fromCA(t *testing.T, ca *certstest.CA) func(servingcert.Spec) map[string][]byte {
	return func(s servingcert.Spec) map[string][]byte { return certstest.ServingSecretData(t, ca, s) }
}

// withExtraKey adds a key of someone else's to the Secret's data.
func withExtraKey(data func(servingcert.Spec) map[string][]byte) func(servingcert.Spec) map[string][]byte {
	return func(s servingcert.Spec) map[string][]byte {
		d := data(s)
		d["extra"] = []byte("kept")
		return d
	}
}
