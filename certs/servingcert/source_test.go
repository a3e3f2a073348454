package servingcert_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"

	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestSourceSyncCatchesUpWithTheStore: the informer's store holds a Secret
// before the Source's handler has loaded it (here the handler is held in an
// OnChange callback), so Current lags the Secret others may already serve.
// Sync loads what the store holds; a version that does not parse leaves the
// cert being served as it is.
func TestSourceSyncCatchesUpWithTheStore(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ca, secrets, v1, src := storedServingCert(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	src.OnChange(func(*servingcert.Loaded) {
		if calls.Add(1) == 1 {
			close(entered)
			<-release // holds the handler: later events reach the store only
		}
	})
	defer close(release)
	go src.Run(ctx)
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the Source never loaded the first Secret")
	}
	if got := src.Current(); got == nil || got.ResourceVersion != v1.ResourceVersion {
		t.Fatalf("Current() = %+v, want resourceVersion %s", got, v1.ResourceVersion)
	}

	v1.Data = certstest.ServingSecretData(t, ca, spec)
	v2, err := secrets.Update(ctx, v1, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	storeHolds(t, src, v2.ResourceVersion)
	if got := src.Current(); got.ResourceVersion != v1.ResourceVersion {
		t.Fatalf("the held handler loaded resourceVersion %s; the test needs it to lag", got.ResourceVersion)
	}
	if got := src.Sync(); got == nil || got.ResourceVersion != v2.ResourceVersion {
		t.Fatalf("Sync() = %+v, want resourceVersion %s", got, v2.ResourceVersion)
	}
	if got := src.Current(); got.ResourceVersion != v2.ResourceVersion || !sameLeaf(got, v2.Data) {
		t.Fatalf("after Sync, Current() serves resourceVersion %s, want %s's cert", got.ResourceVersion, v2.ResourceVersion)
	}

	v2.Data = map[string][]byte{servingcert.KeyCert: []byte("not PEM"), servingcert.KeyKey: v2.Data[servingcert.KeyKey]}
	v3, err := secrets.Update(ctx, v2, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	storeHolds(t, src, v3.ResourceVersion)
	if got := src.Sync(); got.ResourceVersion != v2.ResourceVersion {
		t.Fatalf("Sync() of a Secret that does not parse = resourceVersion %s, want the served %s kept", got.ResourceVersion, v2.ResourceVersion)
	}
}

// storedServingCert starts an apiserver holding a serving-cert Secret from
// a new CA and returns the CA, the Secrets client, that Secret and a
// Source of it, not yet running.
func storedServingCert(t *testing.T) (*certstest.CA, typedcorev1.SecretInterface, *corev1.Secret, *servingcert.Source) {
	t.Helper()
	env := testenv.Start(t, testenv.Options{})
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	secrets := env.Clientset.CoreV1().Secrets(metav1.NamespaceDefault)
	v1, err := secrets.Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: spec.SecretName}, Data: certstest.ServingSecretData(t, ca, spec)}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ca, secrets, v1, servingcert.NewSource(env.Clientset, metav1.NamespaceDefault, spec.SecretName, logr.Discard())
}

func storeHolds(t *testing.T, src *servingcert.Source, rv string) {
	t.Helper()
	poll.Until(t, 30*time.Second, 10*time.Millisecond, "the informer's store to hold resourceVersion "+rv, func() error {
		if s := src.Secret(); s == nil || s.ResourceVersion != rv {
			return fmt.Errorf("the store holds %v", s)
		}
		return nil
	})
}

func sameLeaf(l *servingcert.Loaded, data map[string][]byte) bool {
	served, err := servingcert.Parse(&corev1.Secret{Data: data})
	return err == nil && string(served.Chain[0].Raw) == string(l.Chain[0].Raw)
}

// TestSourceOfferOutrunsAStalledWatch: the Secret is renewed while this
// Source's watch delivers nothing (here the informer is stopped, its store
// left at the old version). Offer serves the renewal at once, and Sync does
// not put the older version in the store back in its place.
func TestSourceOfferOutrunsAStalledWatch(t *testing.T) {
	ctx := context.Background()
	ca, secrets, v1, src := storedServingCert(t)
	var notified atomic.Int32
	src.OnChange(func(*servingcert.Loaded) { notified.Add(1) })
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { src.Run(runCtx); close(done) }()
	storeHolds(t, src, v1.ResourceVersion)
	// The store is written before the handler is told: stopped in between,
	// the informer drops the event and the Source serves nothing.
	poll.Until(t, 30*time.Second, 10*time.Millisecond, "the Source to serve resourceVersion "+v1.ResourceVersion, func() error {
		switch got := src.Current(); {
		case got == nil:
			return fmt.Errorf("it serves nothing")
		case got.ResourceVersion != v1.ResourceVersion:
			return fmt.Errorf("it serves resourceVersion %s", got.ResourceVersion)
		}
		return nil
	})
	stop()
	<-done
	if got := src.Current(); got == nil || got.ResourceVersion != v1.ResourceVersion {
		t.Fatalf("Current() = %+v, want resourceVersion %s", got, v1.ResourceVersion)
	}

	v1.Data = certstest.ServingSecretData(t, ca, spec)
	v2, err := secrets.Update(ctx, v1, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	before := notified.Load()
	src.Offer(v2)
	if got := src.Current(); got.ResourceVersion != v2.ResourceVersion || !sameLeaf(got, v2.Data) {
		t.Fatalf("after Offer, Current() serves resourceVersion %s, want %s's cert", got.ResourceVersion, v2.ResourceVersion)
	}
	if notified.Load() == before {
		t.Error("Offer of a new cert notified nobody: the hook would not re-check it")
	}
	if got := src.Sync(); got.ResourceVersion != v2.ResourceVersion {
		t.Fatalf("Sync() went back to the stalled store's resourceVersion %s, want %s kept", got.ResourceVersion, v2.ResourceVersion)
	}

	// An older version offered late, or one that does not parse, is not served.
	src.Offer(v1)
	bad := v2.DeepCopy()
	bad.ResourceVersion = "999999999"
	bad.Data = map[string][]byte{servingcert.KeyCert: []byte("not PEM")}
	src.Offer(bad)
	if got := src.Current(); got.ResourceVersion != v2.ResourceVersion {
		t.Fatalf("Current() serves resourceVersion %s, want %s kept", got.ResourceVersion, v2.ResourceVersion)
	}
}
