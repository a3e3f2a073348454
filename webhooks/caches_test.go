package webhooks

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestKindOf(t *testing.T) {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("config.flomesh.io/v1alpha3")
	u.SetKind("MeshConfig")
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("Pod"))
	for _, c := range []struct {
		obj  client.Object
		want string
	}{
		{&corev1.Namespace{}, "v1.Namespace"},
		{u, "MeshConfig"},
		{m, "Pod"},
	} {
		if got := kindOf(c.obj); got != c.want {
			t.Errorf("kindOf(%T) = %q, want %q", c.obj, got, c.want)
		}
	}
}

// testCachesGateReadiness: the informers CachesSynced registers start with
// the cache, with no read of their kind, and the webhook's pod readiness
// waits for them, naming the ones it waits for.
func testCachesGateReadiness(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "caches", true)
	c, err := cache.New(env.Config, cache.Options{Scheme: scheme.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cm := &metav1.PartialObjectMetadata{}
	cm.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	synced, err := CachesSynced(ctx, c, logr.Discard(), &corev1.Namespace{}, cm)
	if err != nil {
		t.Fatal(err)
	}
	if err := synced(); err == nil || !strings.Contains(err.Error(), "waiting for the caches of v1.Namespace, ConfigMap to sync") {
		t.Fatalf("before the cache starts: synced() = %v", err)
	}

	opts := tc.options()
	healthPort := freePort(t)
	opts.HealthProbeBindAddress = "127.0.0.1:" + strconv.Itoa(healthPort)
	w := tc.webhook(freePort(t))
	w.Synced = synced
	s := start(t, opts, w)
	// The pod's /readyz withholds reasons; /readyz/<name> gives them.
	get := func(path string) (int, string) {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(healthPort) + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	readyz := func() (int, string) { return get("/readyz/" + w.Name) }
	podReady := func() bool { code, _ := get("/readyz"); return code == http.StatusOK }
	// Serving in every other respect (the cert loaded, the listener proven:
	// checked before the caches), the pod is not Ready.
	waitFor(t, 30*time.Second, "/readyz failing on the caches alone", func() error {
		if code, body := readyz(); code == http.StatusOK || !strings.Contains(body, "waiting for the caches of v1.Namespace, ConfigMap to sync") {
			return errTest(strconv.Itoa(code) + " " + body)
		}
		return nil
	})
	time.Sleep(time.Second)
	if code, body := readyz(); code == http.StatusOK {
		t.Fatalf("/readyz = %d %s before the cache started", code, body)
	}
	if s.Ready(ctx) == nil || podReady() {
		t.Fatal("Server.Ready or the pod's /readyz passed before the cache started")
	}

	cctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Start(cctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cache: %v", err)
		}
	})
	// Nothing reads either kind: the informers were registered up front.
	waitFor(t, 30*time.Second, "/readyz 200 once the caches synced", func() error {
		if code, body := readyz(); code != http.StatusOK {
			return errTest(strconv.Itoa(code) + " " + body)
		}
		return nil
	})
	if err := synced(); err != nil {
		t.Errorf("after the cache synced: synced() = %v", err)
	}
	s.waitReady(t)
	if !podReady() {
		t.Error("the pod's /readyz fails once the caches synced")
	}
}
