package reviewhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	admissionv1beta1 "k8s.io/api/admission/v1beta1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// Admission is an http.Handler for AdmissionReview requests. The handler is
// run by controller-runtime's admission.Webhook.Handle: panic recovery (a
// 500 result, counted in controller_runtime_webhook_panics_total), the
// request logger, and Response.Complete (uid, JSON patch encoding).
type Admission struct {
	wh *admission.Webhook
	ep endpoint
}

// NewAdmission serves h. A panic in h becomes an HTTP 200 review with a 500
// result, never a crashed server.
func NewAdmission(h admission.Handler) *Admission {
	return &Admission{wh: &admission.Webhook{Handler: h, RecoverPanic: ptr.To(true), LogConstructor: plainLog}, ep: newEndpoint("admission")}
}

// plainLog replaces controller-runtime's DefaultLogConstructor, which adds
// six request values with WithValues on every admission: with zap that
// encodes them at once (about 11 KB and an eighth of the allocations of an
// injection), for a logger our handlers never take from the context; they
// log with their own request values when they log.
func plainLog(base logr.Logger, _ *admission.Request) logr.Logger { return base }

// Named sets the webhook label of the request metrics (e.g. "injector").
func (a *Admission) Named(webhook string) *Admission {
	a.ep.name(webhook)
	return a
}

// WithRecoverPanic turns panic recovery off for fuzzing, so a panic fails
// the fuzz run instead of becoming a 500 result.
func (a *Admission) WithRecoverPanic(on bool) *Admission {
	a.wh.WithRecoverPanic(on)
	return a
}

var (
	v1TypeMeta      = metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}
	v1beta1TypeMeta = metav1.TypeMeta{APIVersion: admissionv1beta1.SchemeGroupVersion.String(), Kind: "AdmissionReview"}
)

// ServeHTTP answers a well-formed request with an AdmissionReview in the
// version it came in; a body that is too large or not a review gets a v1
// review with a 4xx result, as controller-runtime answers them.
func (a *Admission) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	result := ResultBadRequest
	defer a.ep.begin()(&result)
	body, ok := a.ep.read(w, r, a.refuse)
	if !ok {
		return
	}
	ar, status, err := Unmarshal(body)
	if err != nil {
		a.ep.refused(r, int(status), err)
		a.refuse(w, int(status), err)
		return
	}
	ctx := r.Context()
	if budget, ok := AnswerBudget(r.URL.Query().Get("timeout")); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, budget)
		defer cancel()
	}
	resp := a.wh.Handle(ctx, admission.Request{AdmissionRequest: *ar.Request})
	result = admissionResult(resp)
	a.write(w, ar.TypeMeta, resp)
}

// maxAnswerMargin is the most of the apiserver's timeout AnswerBudget
// keeps for the answer to travel back.
const maxAnswerMargin = 2 * time.Second

// AnswerBudget is how long a handler may take for a review the apiserver
// sent with ?timeout= (its time left for the call: the webhook's
// timeoutSeconds, rounded up to whole seconds; k8s.io/apiserver's webhook
// dispatchers): that timeout less a quarter of it, at most
// maxAnswerMargin, so the handler's own error (a CA that does not answer,
// naming it) reaches the user instead of the apiserver's "context deadline
// exceeded". The handler's own bound (the injector's 15 s) still applies
// when shorter; false when the parameter is absent or not a positive
// duration.
func AnswerBudget(timeout string) (time.Duration, bool) {
	t, err := time.ParseDuration(timeout)
	if err != nil || t <= 0 {
		return 0, false
	}
	return t - min(t/4, maxAnswerMargin), true
}

func (a *Admission) refuse(w http.ResponseWriter, status int, err error) {
	a.write(w, v1TypeMeta, admission.Errored(int32(status), err))
}

func (a *Admission) write(w http.ResponseWriter, tm metav1.TypeMeta, resp admission.Response) {
	writeJSON(w, http.StatusOK, admissionv1.AdmissionReview{TypeMeta: tm, Response: &resp.AdmissionResponse}, a.ep.log)
}

// admissionResult classifies a completed response: a 5xx result or a
// BadRequest is the handler's failure, any other refusal a denial (Denied's
// 400 without a reason, 403 Forbidden, 422 Invalid, 429 Too Many Requests).
func admissionResult(resp admission.Response) string {
	switch {
	case resp.Allowed && (len(resp.Patches) > 0 || len(resp.Patch) > 0):
		return ResultPatched
	case resp.Allowed && len(resp.Warnings) > 0:
		return ResultWarned
	case resp.Allowed:
		return ResultAllowed
	case Failed(resp):
		return ResultError
	default:
		return ResultDenied
	}
}

// Failed reports whether resp is the handler's failure rather than its
// decision: a refusal with a 5xx result or reason BadRequest, counted as
// result "error" (the chart's FSMWebhooksAdmissionErrors) and so logged by
// handlers as an error, where a denial is not.
func Failed(resp admission.Response) bool {
	return !resp.Allowed && resp.Result != nil &&
		(resp.Result.Reason == metav1.StatusReasonBadRequest || resp.Result.Code >= http.StatusInternalServerError)
}

// Unmarshal decodes an AdmissionReview request body. admission.k8s.io/v1beta1
// has the same shape as v1 and is accepted for old apiservers; the response
// echoes whichever version came in. On error it also returns the status
// that describes the problem. The request's object, old object and options
// are slices of body, not copies: body must not be modified while they are
// used.
func Unmarshal(body []byte) (*admissionv1.AdmissionReview, int32, error) {
	ar := &admissionv1.AdmissionReview{}
	if err := unmarshalReview(body, ar); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("the body is not an AdmissionReview: %w", err)
	}
	if ar.TypeMeta != v1TypeMeta && ar.TypeMeta != v1beta1TypeMeta {
		return nil, http.StatusBadRequest, fmt.Errorf("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got apiVersion %q kind %q",
			ar.APIVersion, ar.Kind)
	}
	if ar.Request == nil {
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview has no request")
	}
	if ar.Request.UID == "" {
		// The apiserver matches the answer by it: a review without one is
		// not the apiserver's, and no handler work is done for it.
		return nil, http.StatusBadRequest, errors.New("the AdmissionReview's request has no uid")
	}
	return ar, 0, nil
}
