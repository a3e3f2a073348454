package reviewhttp

import (
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Denied refuses a request as FSM v1.5.1's webhooks refuse one
// (webhook.AdmissionError: the message and nothing else). The apiserver
// answers the client 400 with no reason for it, so kubectl prints "Error
// from server: ... denied the request: <message>" as FSM users know it;
// controller-runtime's admission.Denied is 403 Forbidden, which kubectl
// prints as "(Forbidden)" and scripts read as an RBAC refusal. The code is
// written out (FSM left it 0 for the apiserver to raise) so that the answer
// reads the same raw.
func Denied(message string) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Result: &metav1.Status{Code: http.StatusBadRequest, Message: message},
	}}
}

// BadRequest answers a review the handler cannot act on: no object, an
// undecodable one, a kind it does not serve. Its reason, BadRequest, is what
// tells it from a Denied in the request metrics (result "error", which the
// chart's alert watches).
func BadRequest(err error) admission.Response {
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{
		Result: &metav1.Status{Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: err.Error()},
	}}
}
