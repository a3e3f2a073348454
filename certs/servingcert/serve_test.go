package servingcert_test

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestSourceKeepsServingThroughBadUpdateAndDelete: a version of the Secret
// that does not parse, and the Secret's deletion, leave the last good cert
// served (and handed to OnChange): dropping it would fail every handshake
// until the Store writes a new one, whose cert is then served at once.
func TestSourceKeepsServingThroughBadUpdateAndDelete(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca, secrets, v1, src := storedServingCert(t)
	events := make(chan *servingcert.Loaded, 8)
	src.OnChange(func(l *servingcert.Loaded) { events <- l })
	go src.Run(ctx)
	next := func(what string) *servingcert.Loaded {
		t.Helper()
		select {
		case l := <-events:
			return l
		case <-time.After(30 * time.Second):
			t.Fatalf("no event for %s", what)
			return nil
		}
	}
	if l := next("the Secret"); l == nil || !sameLeaf(l, v1.Data) {
		t.Fatalf("first event served %+v, want the Secret's cert", l)
	}

	bad := v1.DeepCopy()
	bad.Data[servingcert.KeyCert] = []byte("not PEM")
	if _, err := secrets.Update(ctx, bad, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := next("the update that does not parse"); l == nil || !sameLeaf(l, v1.Data) {
		t.Errorf("after an update that does not parse, OnChange got %+v, want the last good cert", l)
	}
	assertServes(t, src, v1.Data)

	if err := secrets.Delete(ctx, v1.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if l := next("the deletion"); l == nil || !sameLeaf(l, v1.Data) {
		t.Errorf("after the Secret's deletion, OnChange got %+v, want the last good cert", l)
	}
	assertServes(t, src, v1.Data)

	// The Store writes it again: the new cert is served without a restart.
	again, err := secrets.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: v1.Name}, Data: certstest.ServingSecretData(t, ca, spec)}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A relist may repeat an earlier event first: wait for the new cert.
	for {
		if l := next("the new cert of the Secret written again"); l != nil && sameLeaf(l, again.Data) {
			break
		}
	}
	assertServes(t, src, again.Data)
}

func assertServes(t *testing.T, src *servingcert.Source, data map[string][]byte) {
	t.Helper()
	c, err := src.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatalf("GetCertificate: %v", err)
	}
	if l := src.Current(); l == nil || !sameLeaf(l, data) || c.Leaf == nil || !c.Leaf.Equal(l.Chain[0]) {
		t.Fatalf("the listener is served %v, want the last good cert", c.Leaf)
	}
}

// idleSource is a Source that is never run: Offer alone decides what it
// serves (its client points nowhere and is never called).
func idleSource(t *testing.T) *servingcert.Source {
	t.Helper()
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: "https://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	return servingcert.NewSource(cs, spec.Namespace, spec.SecretName, logr.Discard())
}

// TestSourceOfferServesOnlyNewerVersions: Offer serves a version of the
// Secret later than the one served. Versions compare as integers, not as
// text ("10" follows "9"); one that is not an integer is taken as newer, as
// the informer's order would have it; an older one offered late is not
// served.
func TestSourceOfferServesOnlyNewerVersions(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	for _, tc := range []struct {
		name string
		// offers are resource versions offered in turn; want is the one
		// served after the last.
		offers []string
		want   string
	}{
		{"the first version", []string{"5"}, "5"},
		{"a later version", []string{"5", "9"}, "9"},
		{"an older version offered late", []string{"9", "5"}, "9"},
		{"a later version with more digits", []string{"9", "10"}, "10"},
		{"an older version with fewer digits", []string{"10", "9"}, "10"},
		{"a version that is not an integer", []string{"10", "v11"}, "v11"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := idleSource(t)
			src.Offer(nil)
			offered := map[string]map[string][]byte{}
			for _, rv := range tc.offers {
				offered[rv] = certstest.ServingSecretData(t, ca, spec)
				src.Offer(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: spec.Namespace, Name: spec.SecretName, ResourceVersion: rv}, Data: offered[rv]})
			}
			if got := src.Current(); got == nil || got.ResourceVersion != tc.want || !sameLeaf(got, offered[tc.want]) {
				t.Fatalf("serves %+v, want resourceVersion %s's cert", got, tc.want)
			}
		})
	}
}

// TestParseRefusesUnusableSecrets: a Secret is served only when its pair
// and its ca.crt parse; the fingerprint tells apart Secrets whose parts
// differ even when their bytes, put end to end, are alike.
func TestParseRefusesUnusableSecrets(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	other := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	good := certstest.ServingSecretData(t, ca, spec)
	with := func(k string, v []byte) *corev1.Secret {
		d := map[string][]byte{}
		for key, val := range good {
			d[key] = val
		}
		d[k] = v
		return &corev1.Secret{Data: d}
	}
	for _, tc := range []struct {
		name string
		sec  *corev1.Secret
	}{
		{"ca.crt not PEM", with(servingcert.KeyCA, []byte("not PEM"))},
		{"ca.crt empty", with(servingcert.KeyCA, nil)},
		{"tls.key of another cert", with(servingcert.KeyKey, certstest.ServingSecretData(t, ca, spec)[servingcert.KeyKey])},
		{"tls.crt not PEM", with(servingcert.KeyCert, []byte("not PEM"))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if l, err := servingcert.Parse(tc.sec); err == nil {
				t.Fatalf("Parse served %s", l.ResourceVersion)
			}
		})
	}

	// tls.key may carry blocks after the key (X509KeyPair skips them):
	// moving the other CA's root from ca.crt into tls.key changes what is
	// trusted, not the bytes end to end.
	otherRoot := certs.EncodeCertsPEM(other.Active())
	a, err := servingcert.Parse(&corev1.Secret{Data: map[string][]byte{servingcert.KeyCert: good[servingcert.KeyCert],
		servingcert.KeyKey: good[servingcert.KeyKey], servingcert.KeyCA: append(append([]byte{}, otherRoot...), good[servingcert.KeyCA]...)}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := servingcert.Parse(&corev1.Secret{Data: map[string][]byte{servingcert.KeyCert: good[servingcert.KeyCert],
		servingcert.KeyKey: append(append([]byte{}, good[servingcert.KeyKey]...), otherRoot...), servingcert.KeyCA: good[servingcert.KeyCA]}})
	if err != nil {
		t.Fatal(err)
	}
	if a.Fingerprint == b.Fingerprint {
		t.Error("two Secrets trusting different roots have one fingerprint")
	}
}
