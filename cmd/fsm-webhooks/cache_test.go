package main

import (
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/flomesh-io/fsm-webhooks/injector"
)

// TestCacheOptions pins what serve's manager caches beyond what handlers
// read by name: a kind missing a restriction here is cached cluster-wide, in
// full, the first time anything reads it through the manager.
func TestCacheOptions(t *testing.T) {
	const fsmNS = "fsm-system"
	meshedPod := labels.Set{injector.ProxyUUIDLabel: "u1"}
	bootstrapSecret := labels.Set{injector.ProxyUUIDLabel: "u1", "app.kubernetes.io/name": "flomesh.io"}
	plain := labels.Set{"app": "web"}
	controllerSvc := fields.Set{"metadata.name": injector.ControllerServiceName}
	otherSvc := fields.Set{"metadata.name": "web"}

	for _, tc := range []struct {
		served []string
		// kind -> want restricted (label or field selector, or namespaces)
		kinds []string
	}{
		{served: allHooks, kinds: []string{"Pod", "Secret", "Service"}},
		{served: []string{hookInjector}, kinds: []string{"Pod", "Secret", "Service"}},
		{served: []string{hookValidator, hookConverter}, kinds: nil},
	} {
		t.Run(fmt.Sprint(tc.served), func(t *testing.T) {
			opts := cacheOptions(tc.served, fsmNS)
			byKind := map[string]cache.ByObject{}
			for obj, bo := range opts.ByObject {
				gvk, err := apiutil.GVKForObject(obj, newScheme())
				if err != nil {
					t.Fatalf("ByObject key %T: %v", obj, err)
				}
				byKind[gvk.Kind] = bo
			}
			var got []string
			for k := range byKind {
				got = append(got, k)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.kinds) {
				t.Fatalf("ByObject kinds = %v, want %v", got, tc.kinds)
			}
			if len(tc.kinds) == 0 {
				return
			}
			if sel := byKind["Pod"].Label; sel == nil || !sel.Matches(meshedPod) || sel.Matches(plain) {
				t.Errorf("Pod label selector %v: must select meshed pods (%v) only, not %v", sel, meshedPod, plain)
			}
			if sel := byKind["Secret"].Label; sel == nil || !sel.Matches(bootstrapSecret) || sel.Matches(meshedPod) || sel.Matches(plain) {
				t.Errorf("Secret label selector %v: must select bootstrap Secrets (%v) only", sel, bootstrapSecret)
			}
			svc := byKind["Service"]
			if _, ok := svc.Namespaces[fsmNS]; !ok || len(svc.Namespaces) != 1 {
				t.Errorf("Service namespaces %v, want only %s", svc.Namespaces, fsmNS)
			}
			if sel := svc.Field; sel == nil || !sel.Matches(controllerSvc) || sel.Matches(otherSvc) {
				t.Errorf("Service field selector %v: must select %s only", sel, injector.ControllerServiceName)
			}
		})
	}
}

// TestCacheStripsManagedFields: every informer (typed, metadata-only,
// unstructured) gets the default transform unless its ByObject sets its
// own (the injector's pods and Secrets: injector.TestCachedMetadata), and
// every transform drops managedFields; the default one nothing else.
func TestCacheStripsManagedFields(t *testing.T) {
	opts := cacheOptions(allHooks, "fsm-system")
	if opts.DefaultTransform == nil {
		t.Fatal("DefaultTransform not set: cached objects keep their managedFields")
	}
	for obj, bo := range opts.ByObject {
		if bo.Transform == nil {
			continue
		}
		for _, in := range []client.Object{
			&metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "m", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}},
		} {
			out, err := bo.Transform(in)
			if err != nil {
				t.Fatalf("ByObject[%T] transform of %T: %v", obj, in, err)
			}
			if o, ok := out.(client.Object); !ok || len(o.GetManagedFields()) != 0 {
				t.Errorf("ByObject[%T] sets its own Transform, which replaces the default one, and it keeps the managedFields of %T: %+v", obj, in, out)
			}
		}
	}
	pod := &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "uid-1", ResourceVersion: "7",
			Labels:          map[string]string{injector.ProxyUUIDLabel: "u1"},
			Annotations:     map[string]string{"a": "b"},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: "rs"}},
			ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{}}`)}},
		},
	}
	want := pod.DeepCopy()
	want.ManagedFields = nil
	got, err := opts.DefaultTransform(pod)
	if err != nil {
		t.Fatal(err)
	}
	m, ok := got.(client.Object)
	if !ok {
		t.Fatalf("transform returned %T, not an object", got)
	}
	if len(m.GetManagedFields()) != 0 {
		t.Errorf("managedFields kept: %v", m.GetManagedFields())
	}
	gotMeta := got.(*metav1.PartialObjectMetadata)
	gotMeta.ManagedFields = nil
	if gotMeta.Name != want.Name || gotMeta.UID != want.UID || gotMeta.ResourceVersion != want.ResourceVersion ||
		!labels.Equals(gotMeta.Labels, want.Labels) || len(gotMeta.OwnerReferences) != 1 || gotMeta.Annotations["a"] != "b" {
		t.Errorf("transform changed more than managedFields: got %+v, want %+v", gotMeta.ObjectMeta, want.ObjectMeta)
	}
	// Typed objects too (Namespaces, MeshConfig, the controller Service).
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "n", Labels: map[string]string{"x": "y"},
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}}}
	if out, err := opts.DefaultTransform(ns); err != nil || len(out.(*corev1.Namespace).ManagedFields) != 0 || out.(*corev1.Namespace).Labels["x"] != "y" {
		t.Errorf("Namespace transform: %v, %+v", err, out)
	}
}
