package webhooks

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

func TestFresher(t *testing.T) {
	obj := func(uid, rv string) *admv1.ValidatingWebhookConfiguration {
		return &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{UID: types.UID(uid), ResourceVersion: rv}}
	}
	cached := obj("a", "10")
	cases := []struct {
		name    string
		written metav1.Object
		want    any
	}{
		{"nothing written", nil, cached},
		{"own write the cache has not seen", obj("a", "11"), nil},
		{"own write the cache already shows", obj("a", "10"), cached},
		{"someone wrote after it", obj("a", "9"), cached},
		{"the object was recreated", obj("b", "11"), cached},
		{"versions that do not compare", obj("a", "x"), cached},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			want := c.want
			if want == nil {
				want = c.written
			}
			if got := fresher(cached, c.written); got != want {
				t.Errorf("fresher = %+v, want %+v", got, want)
			}
		})
	}
}

// TestOwnWriteTrustExpires: the hook's own write outranks the cache for
// ownWriteTrust only; an older-looking cached object after that (an etcd
// restore puts resource versions back) is the one the hook works from.
func TestOwnWriteTrustExpires(t *testing.T) {
	cached := &admv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "cfg", UID: "a", ResourceVersion: "10"}}
	written := cached.DeepCopy()
	written.ResourceVersion = "11"
	h := &hook{
		w:   Webhook{Registration: Registration{Name: "cfg"}},
		obj: cache.NewSharedIndexInformer(&cache.ListWatch{}, &admv1.ValidatingWebhookConfiguration{}, 0, cache.Indexers{}),
	}
	if err := h.obj.GetStore().Add(cached); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		age  time.Duration
		want any
	}{
		{time.Second, written},
		{ownWriteTrust - time.Second, written},
		{ownWriteTrust + time.Second, cached},
	} {
		h.written, h.writtenAt = written, time.Now().Add(-c.age)
		got, exists, err := h.registration()
		if err != nil || !exists || got != c.want {
			t.Errorf("written %s ago: registration() = %v, %v, %v; want resourceVersion %s", c.age, got, exists, err, c.want.(metav1.Object).GetResourceVersion())
		}
	}
}

// testOwnWriteOutrunsStalledWatch: the registration informer delivers the
// hook's own caBundle write late (here: never). The passes in between work
// from the version the hook wrote: they neither write again from the older
// cached one (a conflict with its own write, logged as a failure) nor take
// the webhook as unregistered.
func testOwnWriteOutrunsStalledWatch(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "stalledwatch", true)
	logs := &lineLog{}
	opts := tc.options()
	opts.Log = logs.logger(tc.name)
	s, err := New(opts, []Webhook{tc.webhook(freePort(t))})
	if err != nil {
		t.Fatal(err)
	}
	h := s.hooks[0]
	cfgs := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := cfgs.Create(ctx, NewValidating(tc.registration().Validating, h.ep, h.w.Registration.Path, nil), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cfgs.Delete(context.Background(), tc.configName(), metav1.DeleteOptions{}) })

	// The list is real; the watch stays open and delivers nothing (a
	// watch-list request is refused, so the reflector lists). The list is a
	// consistent read: the reflector's first asks resourceVersion "0", which
	// the apiserver may answer from a watch cache that has not yet seen the
	// Create above (on a loaded machine it had not), and no watch event
	// would ever bring it.
	byName := fields.OneTermEqualSelector("metadata.name", tc.configName()).String()
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			o.ResourceVersion, o.ResourceVersionMatch = "", ""
			return cfgs.List(ctx, o)
		},
		WatchFuncWithContext: func(_ context.Context, o metav1.ListOptions) (watch.Interface, error) {
			if o.SendInitialEvents != nil && *o.SendInitialEvents {
				return nil, errors.New("no watch-list in this test")
			}
			return watch.NewFake(), nil
		},
	}
	h.obj = cache.NewSharedIndexInformer(lw, &admv1.ValidatingWebhookConfiguration{}, 0, cache.Indexers{})
	_, _ = h.obj.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: func(any) { h.kick() }})
	r := run(t, s)

	r.waitReady(t)
	if got := tc.config(t).Webhooks[0].ClientConfig.CABundle; !bytes.Equal(got, mustBundle(t, tc)) {
		t.Fatalf("caBundle in the API = %q, want the mesh CA bundle", got)
	}
	// Passes go on every ResyncInterval (1 s) and on each Secret event.
	time.Sleep(4 * opts.ResyncInterval)
	if n := logs.count("changed"); n != 0 {
		t.Errorf("%d log line(s) say the configuration changed under a write; the only writer was this hook:\n%s", n, logs.String())
	}
	if n := logs.count("replaced the caBundle"); n != 1 {
		t.Errorf("caBundle written %d times, want once:\n%s", n, logs.String())
	}
}

// TestIsRepair: only a write restoring the bundle this hook had published
// counts as a repair; one following a change of the desired bundle (a root
// rotation) or a first write does not.
func TestIsRepair(t *testing.T) {
	a, b := []byte("root A"), []byte("roots A and B")
	for _, tc := range []struct {
		name               string
		exists             bool
		published, desired []byte
		want               bool
	}{
		{"someone overwrote the published bundle", true, a, a, true},
		{"desired bundle changed: rotation adds a root", true, a, b, false},
		{"desired bundle changed: rotation drops a root", true, b, a, false},
		{"first write since start", true, nil, a, false},
		{"object created", false, a, a, false},
	} {
		if got := isRepair(tc.exists, tc.published, tc.desired); got != tc.want {
			t.Errorf("%s: isRepair = %v, want %v", tc.name, got, tc.want)
		}
	}
}
