package vault

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestNewRetriesTransientTokenRead: the token Secret is read at start; one
// 500 from the apiserver (an etcd leader change) is retried instead of
// ending `serve`, while a missing Secret still fails at once.
func TestNewRetriesTransientTokenRead(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cs := fake.NewClientset(&corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "vault-token", Namespace: "fsm-system"},
		Data:       map[string][]byte{"token": []byte("s.token\n")},
	})
	var gets atomic.Int32
	cs.PrependReactor("get", "secrets", func(k8stesting.Action) (bool, runtime.Object, error) {
		if gets.Add(1) == 1 {
			return true, nil, apierrors.NewInternalError(errors.New("etcdserver: leader changed"))
		}
		return false, nil, nil
	})
	o := Options{Host: "vault.example", Port: 8200, Protocol: "https", Role: DefaultRole,
		TokenSecretName: "vault-token", TokenSecretKey: "token", TokenSecretNamespace: "fsm-system", Secrets: cs}
	i, err := New(ctx, o)
	if err != nil {
		t.Fatalf("one transient error reading the token Secret ends New: %v", err)
	}
	if got := i.client().Token(); got != "s.token" {
		t.Errorf("token %q, want s.token", got)
	}
	if gets.Load() != 2 {
		t.Errorf("%d Secret reads, want 2", gets.Load())
	}

	o.TokenSecretName = "absent"
	gets.Store(1) // no more injected errors
	start := time.Now()
	if _, err := New(ctx, o); !apierrors.IsNotFound(err) {
		t.Errorf("missing Secret: err = %v, want NotFound", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("a missing Secret took %s to fail: retried as if transient", d)
	}
}
