// Package probehook is the serving tests' tiny validating webhook: it denies
// ConfigMaps labelled deny=true with Message, so a denial carrying Message
// proves the apiserver reached the webhook over TLS with the caBundle in
// force. The webhooks tests and test/vaultdev admit through it while serving
// certificates renew or servers restart.
package probehook

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Message is the webhook's denial message.
const Message = "denied by the test webhook"

// Handler denies a ConfigMap labelled deny=true with Message and allows
// everything else.
func Handler() admission.Handler {
	return admission.HandlerFunc(func(_ context.Context, req admission.Request) admission.Response {
		var obj metav1.PartialObjectMetadata
		if err := json.Unmarshal(req.Object.Raw, &obj); err != nil {
			return admission.Errored(http.StatusBadRequest, err)
		}
		if obj.Labels["deny"] == "true" {
			return admission.Denied(Message)
		}
		return admission.Allowed("")
	})
}

// Admit creates in namespace a ConfigMap the webhook must deny: nil means the
// apiserver reached the webhook and got its answer; otherwise the error says
// what happened instead (admitted, or the apiserver's own error).
func Admit(ctx context.Context, cs kubernetes.Interface, namespace string) error {
	_, err := cs.CoreV1().ConfigMaps(namespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "probe-", Labels: map[string]string{"deny": "true"}},
	}, metav1.CreateOptions{})
	switch {
	case err == nil:
		return errors.New("ConfigMap admitted: the webhook was not called")
	case apierrors.IsForbidden(err) && strings.Contains(err.Error(), Message):
		return nil
	default:
		return err
	}
}
