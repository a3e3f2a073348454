package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// convertHandler is a minimal conversion webhook: it rewrites apiVersion
// and stamps an annotation, so a read proves the apiserver called it.
func convertHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var review apiextv1.ConversionReview
		if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
			http.Error(w, "bad ConversionReview", http.StatusBadRequest)
			return
		}
		resp := &apiextv1.ConversionResponse{UID: review.Request.UID, Result: metav1.Status{Status: metav1.StatusSuccess}}
		for _, raw := range review.Request.Objects {
			var u unstructured.Unstructured
			if err := u.UnmarshalJSON(raw.Raw); err != nil {
				resp.Result = metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}
				break
			}
			u.SetAPIVersion(review.Request.DesiredAPIVersion)
			ann := u.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann["converted-by"] = "test-webhook"
			u.SetAnnotations(ann)
			b, _ := u.MarshalJSON()
			resp.ConvertedObjects = append(resp.ConvertedObjects, runtimeRaw(b))
		}
		review.Response, review.Request = resp, nil
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(&review)
	})
}

// createTwoVersionCRD creates the namespaced CRD <singular>s.test.flomesh.io
// serving v1 (storage) and v2 with any content, deleted when the test ends,
// for a conversion webhook to own; it returns the client that manages CRDs.
func createTwoVersionCRD(ctx context.Context, t *testing.T, singular, kind string) (apiextclient.Interface, *apiextv1.CustomResourceDefinition) {
	t.Helper()
	apiext := apiextclient.NewForConfigOrDie(env.Config)
	schemaAny := &apiextv1.CustomResourceValidation{OpenAPIV3Schema: &apiextv1.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrTrue()}}
	crd := &apiextv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: singular + "s.test.flomesh.io"},
		Spec: apiextv1.CustomResourceDefinitionSpec{
			Group: "test.flomesh.io",
			Names: apiextv1.CustomResourceDefinitionNames{Plural: singular + "s", Singular: singular, Kind: kind, ListKind: kind + "List"},
			Scope: apiextv1.NamespaceScoped,
			Versions: []apiextv1.CustomResourceDefinitionVersion{
				{Name: "v1", Served: true, Storage: true, Schema: schemaAny},
				{Name: "v2", Served: true, Schema: schemaAny},
			},
		},
	}
	if _, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Create(ctx, crd, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = apiext.ApiextensionsV1().CustomResourceDefinitions().Delete(context.Background(), crd.Name, metav1.DeleteOptions{})
	})
	return apiext, crd
}

func testConversion(t *testing.T) {
	ctx := context.Background()
	tc := newCase(t, "conversion", true)
	apiext, crd := createTwoVersionCRD(ctx, t, "widget", "Widget")
	w := Webhook{
		Name: "converter-test", Port: freePort(t), ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
		Handlers: map[string]http.Handler{fsmnames.ConverterPath: convertHandler()},
		Registration: Registration{Kind: CRDConversion, Name: crd.Name, Path: fsmnames.ConverterPath, Conversion: &apiextv1.CustomResourceConversion{
			Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}},
		}},
	}
	s := start(t, tc.options(), w)
	s.waitReady(t)
	got, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	conv := got.Spec.Conversion
	if conv.Strategy != apiextv1.WebhookConverter || conv.Webhook == nil || len(conv.Webhook.ConversionReviewVersions) != 1 ||
		!bytes.Equal(conv.Webhook.ClientConfig.CABundle, mustBundle(t, tc)) {
		t.Fatalf("conversion stanza %+v", conv)
	}
	// Stored as v1, read as v2 through the webhook.
	dyn := dynamic.NewForConfigOrDie(env.Config)
	v1 := schema.GroupVersionResource{Group: "test.flomesh.io", Version: "v1", Resource: "widgets"}
	v2 := v1
	v2.Version = "v2"
	obj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "test.flomesh.io/v1", "kind": "Widget", "metadata": map[string]any{"name": "w1"}}}
	waitFor(t, settleWithin, "create and read back in v2", func() error {
		if _, err := dyn.Resource(v1).Namespace(tc.workNS).Create(ctx, obj, metav1.CreateOptions{}); err != nil && !isAlreadyExists(err) {
			return err
		}
		back, err := dyn.Resource(v2).Namespace(tc.workNS).Get(ctx, "w1", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if back.GetAPIVersion() != "test.flomesh.io/v2" || back.GetAnnotations()["converted-by"] != "test-webhook" {
			return errTest("not converted by the webhook: " + back.GetAPIVersion())
		}
		return nil
	})
	// A Helm upgrade re-applies the CRD without the conversion stanza:
	// repaired.
	got, err = apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Spec.Conversion = &apiextv1.CustomResourceConversion{Strategy: apiextv1.NoneConverter}
	if _, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleWithin, "conversion stanza repaired", func() error {
		c, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if c.Spec.Conversion == nil || c.Spec.Conversion.Strategy != apiextv1.WebhookConverter || !bytes.Equal(ConversionCABundle(c), mustBundle(t, tc)) {
			return errTest("not repaired")
		}
		return nil
	})
}
