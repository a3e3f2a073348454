package reviewhttp

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	conversionmetrics "sigs.k8s.io/controller-runtime/pkg/webhook/conversion/metrics"
)

// Converter decides one ConversionRequest. Conversion sets the response's
// uid and recovers a panic.
type Converter interface {
	// Convert answers req. ctx is the request's: done when the apiserver
	// closed the connection (its timeout, or it went away), when nobody
	// reads the answer any more, so a long review may stop between objects.
	Convert(ctx context.Context, req *apixv1.ConversionRequest) *apixv1.ConversionResponse
}

// Conversion is an http.Handler for ConversionReview (apiextensions.k8s.io/v1)
// requests, the twin of Admission. controller-runtime's conversion webhook
// is not used because its decision refuses objects already in the desired
// version and stops at the first bad object (see converter); its panic
// handling is reproduced here: the PanicHandlers and
// controller_runtime_conversion_webhook_panics_total.
type Conversion struct {
	c            Converter
	ep           endpoint
	recoverPanic bool
}

// NewConversion serves c. A panic in c becomes a Failure, never a crashed
// server.
func NewConversion(c Converter) *Conversion {
	return &Conversion{c: c, ep: newEndpoint("conversion"), recoverPanic: true}
}

// Named sets the webhook label of the request metrics (e.g. "converter").
func (c *Conversion) Named(webhook string) *Conversion {
	c.ep.name(webhook)
	return c
}

// WithRecoverPanic turns panic recovery off for fuzzing, so a panic fails
// the fuzz run instead of becoming a Failure.
func (c *Conversion) WithRecoverPanic(on bool) *Conversion {
	c.recoverPanic = on
	return c
}

var conversionTypeMeta = metav1.TypeMeta{APIVersion: apixv1.SchemeGroupVersion.String(), Kind: "ConversionReview"}

// ServeHTTP answers with a ConversionReview: HTTP 200 whether the conversion
// succeeded or failed (the Result says which), as the apiserver expects; a
// body that is too large or not a review gets its 4xx status and a Failure
// naming the problem.
func (c *Conversion) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	result := ResultBadRequest
	defer c.ep.begin()(&result)
	body, ok := c.ep.read(w, r, c.refuse)
	if !ok {
		return
	}
	review, err := UnmarshalConversion(body)
	if err != nil {
		c.ep.refused(r, http.StatusBadRequest, err)
		c.refuse(w, http.StatusBadRequest, err)
		return
	}
	resp := c.convert(r.Context(), review.Request)
	resp.UID = review.Request.UID
	result = ResultConverted
	if resp.Result.Status != metav1.StatusSuccess {
		result = ResultError
	}
	writeJSON(w, http.StatusOK, &apixv1.ConversionReview{TypeMeta: conversionTypeMeta, Response: resp}, c.ep.log)
}

func (c *Conversion) convert(ctx context.Context, req *apixv1.ConversionRequest) (resp *apixv1.ConversionResponse) {
	defer func() {
		if !c.recoverPanic {
			return
		}
		if r := recover(); r != nil {
			conversionmetrics.WebhookPanics.WithLabelValues().Inc()
			for _, fn := range utilruntime.PanicHandlers {
				fn(ctx, r)
			}
			resp = failure(fmt.Errorf("internal error converting to %s", req.DesiredAPIVersion))
		}
	}()
	if resp = c.c.Convert(ctx, req); resp == nil {
		return failure(fmt.Errorf("internal error converting to %s: no response", req.DesiredAPIVersion))
	}
	return resp
}

func (c *Conversion) refuse(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, &apixv1.ConversionReview{TypeMeta: conversionTypeMeta, Response: failure(err)}, c.ep.log)
}

func failure(err error) *apixv1.ConversionResponse {
	return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}}
}

// UnmarshalConversion decodes a ConversionReview request body, as strictly
// as Unmarshal decodes an AdmissionReview. Only apiextensions.k8s.io/v1 is
// accepted: the CRD registers conversionReviewVersions [v1]. The request's
// objects are slices of body, as Unmarshal's are.
func UnmarshalConversion(body []byte) (*apixv1.ConversionReview, error) {
	review := &apixv1.ConversionReview{}
	if err := unmarshalReview(body, review); err != nil {
		return nil, fmt.Errorf("the body is not a ConversionReview: %w", err)
	}
	if review.TypeMeta != conversionTypeMeta {
		return nil, fmt.Errorf("expected apiVersion apiextensions.k8s.io/v1 and kind ConversionReview, got apiVersion %q kind %q",
			review.APIVersion, review.Kind)
	}
	if review.Request == nil {
		return nil, errors.New("the ConversionReview has no request")
	}
	if review.Request.UID == "" {
		return nil, errors.New("the ConversionReview's request has no uid")
	}
	return review, nil
}
