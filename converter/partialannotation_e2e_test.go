package converter_test

import (
	"context"
	"testing"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// TestPartialAnnotationThroughAPIServer: against a real apiserver whose CRD
// points at the converter (as TestConversionThroughAPIServer), a v1alpha1
// write whose annotation holds part of a v1alpha3 section is stored as the
// v1alpha3 object a v1alpha3 write of that data stores: the fields the
// section lacks have the schema defaults, and the object passes the
// v1alpha3 schema. (A v1alpha3 object too large to read in the old versions
// is refused by the validator: validator/e2e_conversion_test.go.)
func TestPartialAnnotationThroughAPIServer(t *testing.T) {
	env, _ := startConverter(t, logr.Discard())
	c := env.Client
	ctx := context.Background()

	t.Run("partial annotation section: stored v1alpha3 object is schema-valid", func(t *testing.T) {
		old := oldObject("partial-ingress")
		old.Annotations = map[string]string{lossless.AnnotationV1Alpha3Fields: `{"ingress":{"type":"NodePort"}}`}
		if err := c.Create(ctx, old); err != nil {
			t.Fatalf("setup: create as v1alpha1: %v", err)
		}
		stored := &v1alpha3.MeshConfig{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(old), stored); err != nil {
			t.Fatal(err)
		}
		if stored.Spec.Ingress == nil {
			t.Fatal("spec.ingress is missing; the annotation has it")
		}
		t.Logf("stored spec.ingress = %+v", *stored.Spec.Ingress)
		if in := stored.Spec.Ingress; !in.Enabled || in.Type != "NodePort" || in.LogLevel != "info" || in.HTTP == nil || in.HTTP.Bind != 80 {
			t.Errorf("spec.ingress = %+v; want type NodePort from the annotation, the rest the v1alpha3 schema defaults (enabled true, logLevel info, http bind 80)", *in)
		}
		// The same object written as v1alpha3 (e.g. a backup restored, or
		// `kubectl get -o yaml | kubectl create`), which the schema checks.
		copyObj := stored.DeepCopy()
		copyObj.ObjectMeta = metav1.ObjectMeta{Name: "partial-ingress-copy", Namespace: stored.Namespace, Annotations: stored.Annotations}
		if err := c.Create(ctx, copyObj); err != nil {
			t.Errorf("the v1alpha3 object the converter stored is refused by the v1alpha3 schema: %v", err)
		}
	})
}
