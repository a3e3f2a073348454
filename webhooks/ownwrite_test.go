package webhooks

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
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

// TestIsRepair: a write counts as a repair when it replaces a caBundle
// someone other than our servers set, or one emptied after this hook had
// published its own; never when our servers set it (a root rotation, a
// lagging replica), nor on a first write.
func TestIsRepair(t *testing.T) {
	a := []byte("root A")
	for _, tc := range []struct {
		name      string
		exists    bool
		writer    bundleWriter
		published []byte
		want      bool
	}{
		{"someone else set it", true, writerOther, a, true},
		{"someone else set it before this process started", true, writerOther, nil, true},
		{"our servers set it: a rotation's phase, another replica", true, writerOurs, a, false},
		{"emptied after this hook published", true, writerUnknown, a, true},
		{"first write since start, nothing there", true, writerUnknown, nil, false},
		{"object created", false, writerUnknown, a, false},
	} {
		if got := isRepair(tc.exists, tc.writer, tc.published); got != tc.want {
			t.Errorf("%s: isRepair = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestIsRevert: writing back the bundle this hook had published backs off,
// whoever changed it; writing a new desired bundle or a first one does not.
func TestIsRevert(t *testing.T) {
	a, b := []byte("root A"), []byte("roots A and B")
	for _, tc := range []struct {
		name               string
		exists             bool
		published, desired []byte
		want               bool
	}{
		{"the published bundle written back", true, a, a, true},
		{"desired bundle changed: rotation adds a root", true, a, b, false},
		{"desired bundle changed: rotation drops a root", true, b, a, false},
		{"first write since start", true, nil, a, false},
		{"object created", false, a, a, false},
	} {
		if got := isRevert(tc.exists, tc.published, tc.desired); got != tc.want {
			t.Errorf("%s: isRevert = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestCABundleWriter: the caBundle's manager in managedFields, as the
// apiserver records it, says who set it, for every kind of registration.
func TestCABundleWriter(t *testing.T) {
	ours, theirs, desired := []byte("ours"), []byte("theirs"), []byte("desired")
	self := FieldManager("fsm-system")
	entry := func(manager, fields string) metav1.ManagedFieldsEntry {
		return metav1.ManagedFieldsEntry{Manager: manager, Operation: metav1.ManagedFieldsOperationUpdate, FieldsType: "FieldsV1",
			FieldsV1: metav1.NewFieldsV1(fields)}
	}
	hookFields := func(names ...string) string {
		var keys []string
		for _, n := range names {
			keys = append(keys, `"k:{\"name\":\"`+n+`\"}":{"f:clientConfig":{"f:caBundle":{}}}`)
		}
		return `{"f:webhooks":{` + strings.Join(keys, ",") + `}}`
	}
	chart := entry("helm", `{"f:webhooks":{"k:{\"name\":\"a\"}":{".":{},"f:name":{},"f:clientConfig":{"f:service":{}}},"k:{\"name\":\"b\"}":{".":{},"f:name":{}}}}`)
	mutating := func(a, b []byte, managed ...metav1.ManagedFieldsEntry) *admv1.MutatingWebhookConfiguration {
		return &admv1.MutatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{ManagedFields: managed},
			Webhooks: []admv1.MutatingWebhook{
				{Name: "a", ClientConfig: admv1.WebhookClientConfig{CABundle: a}},
				{Name: "b", ClientConfig: admv1.WebhookClientConfig{CABundle: b}},
			},
		}
	}
	crd := func(bundle []byte, managed ...metav1.ManagedFieldsEntry) *apiextv1.CustomResourceDefinition {
		return &apiextv1.CustomResourceDefinition{
			ObjectMeta: metav1.ObjectMeta{ManagedFields: managed},
			Spec: apiextv1.CustomResourceDefinitionSpec{Conversion: &apiextv1.CustomResourceConversion{
				Strategy: apiextv1.WebhookConverter,
				Webhook:  &apiextv1.WebhookConversion{ClientConfig: &apiextv1.WebhookClientConfig{CABundle: bundle}},
			}},
		}
	}
	crdFields := `{"f:spec":{"f:conversion":{"f:webhook":{"f:clientConfig":{"f:caBundle":{}}}}}}`
	for _, c := range []struct {
		name   string
		obj    any
		want   bundleWriter
		wantBy string
	}{
		{"both entries ours", mutating(ours, ours, chart, entry(self, hookFields("a", "b"))), writerOurs, ""},
		{"one entry set by kubectl", mutating(ours, theirs, chart, entry(self, hookFields("a")), entry("kubectl-edit", hookFields("b"))), writerOther, "kubectl-edit"},
		{"an entry someone else set that already holds desired is not replaced", mutating(desired, ours, chart, entry("argocd-controller", hookFields("a")), entry(self, hookFields("b"))), writerOurs, ""},
		{"an emptied entry", mutating(ours, nil, chart, entry(self, hookFields("a"))), writerUnknown, ""},
		// Empty says nothing of who emptied it, whatever managedFields
		// still records: a repair only if this hook had published there.
		{"an emptied entry still listed as ours", mutating(ours, nil, chart, entry(self, hookFields("a", "b"))), writerUnknown, ""},
		{"no managedFields", mutating(ours, ours), writerUnknown, ""},
		{"ours, applied unchanged by helm", mutating(ours, ours, chart, entry(self, hookFields("a", "b")), entry("helm", hookFields("a", "b"))), writerOurs, ""},
		{"a release that named no manager", mutating(ours, ours, chart, entry(legacyFieldManager, hookFields("a", "b"))), writerOurs, ""},
		{"another installation of the mesh", mutating(ours, theirs, chart, entry(self, hookFields("a")), entry(FieldManager("fsm-other"), hookFields("b"))), writerOther, "fsm-webhooks/fsm-other"},
		{"CRD conversion stanza ours", crd(ours, entry(self, crdFields)), writerOurs, ""},
		{"CRD conversion stanza of a helm rollback", crd(theirs, entry("helm", crdFields)), writerOther, "helm"},
		{"CRD without a caBundle", crd(nil), writerUnknown, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, by := caBundleWriter(c.obj, desired, func(m string) bool { return m == self || m == legacyFieldManager })
			if got != c.want || by != c.wantBy {
				t.Errorf("caBundleWriter = %d (%q), want %d (%q)", got, by, c.want, c.wantBy)
			}
		})
	}
}
