package converter

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"runtime/debug"
	"sort"
	"strings"
	"time"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"
)

// Path is where the apiserver sends ConversionReviews.
const Path = "/convert"

// MaxRequestBytes bounds a ConversionReview body. A list of a few thousand
// MeshConfigs in one review stays well below it.
const MaxRequestBytes = 64 << 20

// Handler serves ConversionReview (apiextensions.k8s.io/v1) requests for the
// kinds of one API group whose versions implement controller-runtime's
// conversion.Hub/Convertible.
//
// It is written here rather than taken from controller-runtime's
// pkg/webhook/conversion because that handler refuses objects that are
// already in the desired version, stops at the first bad object instead of
// reporting all of them, and answers malformed requests with an empty body.
type Handler struct {
	scheme *runtime.Scheme
	group  string
	log    logr.Logger
}

// NewHandler returns the conversion handler for the kinds of group registered
// in scheme (for MeshConfig: config.flomesh.io with v1alpha1, v1alpha2 and
// v1alpha3 added).
func NewHandler(scheme *runtime.Scheme, group string, log logr.Logger) *Handler {
	return &Handler{scheme: scheme, group: group, log: log.WithName("converter")}
}

var _ http.Handler = &Handler{}

// ServeHTTP decodes a ConversionReview, converts it and writes the review
// back with the request's uid. Conversion failures are reported in the
// response (HTTP 200, status Failure), as the apiserver expects; only an
// unusable HTTP request gets a 4xx status.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	review, status, err := h.readReview(w, r)
	if err != nil {
		h.log.Error(err, "rejecting conversion request", "remote", r.RemoteAddr)
		observe(resultBadRequest, start)
		writeReview(w, status, &apixv1.ConversionReview{
			TypeMeta: reviewTypeMeta,
			Response: failure("", err),
		}, h.log)
		return
	}
	resp := h.Convert(review.Request)
	result := resultSuccess
	if resp.Result.Status != metav1.StatusSuccess {
		result = resultFailure
		h.log.Info("conversion failed", "uid", review.Request.UID, "desiredAPIVersion", review.Request.DesiredAPIVersion, "reason", resp.Result.Message)
	} else {
		h.log.V(1).Info("converted", "uid", review.Request.UID, "desiredAPIVersion", review.Request.DesiredAPIVersion, "objects", len(resp.ConvertedObjects))
	}
	observe(result, start)
	writeReview(w, http.StatusOK, &apixv1.ConversionReview{TypeMeta: reviewTypeMeta, Response: resp}, h.log)
}

var reviewTypeMeta = metav1.TypeMeta{APIVersion: apixv1.SchemeGroupVersion.String(), Kind: "ConversionReview"}

func (h *Handler) readReview(w http.ResponseWriter, r *http.Request) (*apixv1.ConversionReview, int, error) {
	if r.Method != http.MethodPost {
		return nil, http.StatusMethodNotAllowed, fmt.Errorf("method %s not allowed, use POST", r.Method)
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != "application/json" {
		return nil, http.StatusUnsupportedMediaType, fmt.Errorf("content type %q not supported, use application/json", r.Header.Get("Content-Type"))
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than %d bytes", MaxRequestBytes)
		}
		return nil, http.StatusBadRequest, fmt.Errorf("reading request body: %w", err)
	}
	review := &apixv1.ConversionReview{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, review); err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("decoding ConversionReview: %w", err)
	}
	if review.Request == nil {
		return nil, http.StatusBadRequest, errors.New("ConversionReview has no request")
	}
	return review, http.StatusOK, nil
}

func writeReview(w http.ResponseWriter, status int, review *apixv1.ConversionReview, log logr.Logger) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(review); err != nil {
		log.Error(err, "writing ConversionReview response")
	}
}

// Convert answers one ConversionRequest. Every object is converted to
// req.DesiredAPIVersion; objects already in that version are returned as
// sent. If any object fails, the whole response fails with every object's
// error in the message, since the apiserver cannot use a partial answer.
// Convert never panics: a panic in a conversion function becomes a Failure.
func (h *Handler) Convert(req *apixv1.ConversionRequest) (resp *apixv1.ConversionResponse) {
	defer func() {
		if r := recover(); r != nil {
			panics.Inc()
			h.log.Error(fmt.Errorf("panic: %v", r), "conversion panicked", "uid", req.UID, "stack", string(debug.Stack()))
			resp = failure(req.UID, fmt.Errorf("internal error converting to %s", req.DesiredAPIVersion))
		}
	}()
	desired, err := h.desiredVersion(req.DesiredAPIVersion)
	if err != nil {
		return failure(req.UID, err)
	}
	out := make([]runtime.RawExtension, len(req.Objects))
	var errs []error
	for i, obj := range req.Objects {
		raw, err := h.convertObject(obj.Raw, desired)
		if err != nil {
			errs = append(errs, fmt.Errorf("object %d%s: %w", i, describe(obj.Raw), err))
			continue
		}
		out[i] = runtime.RawExtension{Raw: raw}
	}
	if len(errs) > 0 {
		return failure(req.UID, utilerrors.NewAggregate(errs))
	}
	return &apixv1.ConversionResponse{
		UID:              req.UID,
		ConvertedObjects: out,
		Result:           metav1.Status{Status: metav1.StatusSuccess},
	}
}

func (h *Handler) desiredVersion(apiVersion string) (schema.GroupVersion, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil || gv.Group != h.group || !h.scheme.IsVersionRegistered(gv) {
		return schema.GroupVersion{}, fmt.Errorf("desiredAPIVersion %q is not served by this converter (serves %s)", apiVersion, strings.Join(h.servedVersions(), ", "))
	}
	return gv, nil
}

func (h *Handler) servedVersions() []string {
	var out []string
	for _, gv := range h.scheme.PrioritizedVersionsForGroup(h.group) {
		out = append(out, gv.String())
	}
	sort.Strings(out)
	return out
}

func (h *Handler) convertObject(raw []byte, desired schema.GroupVersion) ([]byte, error) {
	var tm metav1.TypeMeta
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &tm); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	srcGVK := tm.GroupVersionKind()
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	if srcGVK.Group != h.group {
		return nil, fmt.Errorf("apiVersion %q is not in group %s", tm.APIVersion, h.group)
	}
	if srcGVK.GroupVersion() == desired {
		return raw, nil
	}
	src, err := h.scheme.New(srcGVK)
	if err != nil {
		return nil, fmt.Errorf("apiVersion %q kind %q is not served by this converter (serves %s)", tm.APIVersion, tm.Kind, strings.Join(h.servedVersions(), ", "))
	}
	dstGVK := desired.WithKind(tm.Kind)
	dst, err := h.scheme.New(dstGVK)
	if err != nil {
		return nil, fmt.Errorf("kind %q has no version %s", tm.Kind, desired)
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, src); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", srcGVK.GroupVersion(), err)
	}
	if err := h.convert(src, dst); err != nil {
		return nil, err
	}
	dst.GetObjectKind().SetGroupVersionKind(dstGVK)
	out, err := json.Marshal(dst)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", desired, err)
	}
	return out, nil
}

// convert goes through the hub: spoke → hub, hub → spoke, spoke → hub → spoke.
func (h *Handler) convert(src, dst runtime.Object) error {
	if hub, ok := dst.(conversion.Hub); ok {
		spoke, ok := src.(conversion.Convertible)
		if !ok {
			return fmt.Errorf("%T cannot convert to the hub", src)
		}
		return spoke.ConvertTo(hub)
	}
	to, ok := dst.(conversion.Convertible)
	if !ok {
		return fmt.Errorf("%T cannot convert from the hub", dst)
	}
	if hub, ok := src.(conversion.Hub); ok {
		return to.ConvertFrom(hub)
	}
	from, ok := src.(conversion.Convertible)
	if !ok {
		return fmt.Errorf("%T cannot convert to the hub", src)
	}
	hub, err := h.hubFor(src)
	if err != nil {
		return err
	}
	if err := from.ConvertTo(hub); err != nil {
		return err
	}
	return to.ConvertFrom(hub)
}

func (h *Handler) hubFor(obj runtime.Object) (conversion.Hub, error) {
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	if kind == "" {
		gvks, _, err := h.scheme.ObjectKinds(obj)
		if err != nil || len(gvks) == 0 {
			return nil, fmt.Errorf("%T is not registered", obj)
		}
		kind = gvks[0].Kind
	}
	for _, gv := range h.scheme.PrioritizedVersionsForGroup(h.group) {
		o, err := h.scheme.New(gv.WithKind(kind))
		if err != nil {
			continue
		}
		if hub, ok := o.(conversion.Hub); ok {
			return hub, nil
		}
	}
	return nil, fmt.Errorf("kind %s of group %s has no hub version", kind, h.group)
}

// describe names an object in error messages, from whatever parses.
func describe(raw []byte) string {
	var o struct {
		APIVersion string `json:"apiVersion"`
		Metadata   struct {
			Namespace string `json:"namespace"`
			Name      string `json:"name"`
		} `json:"metadata"`
	}
	if json.Unmarshal(raw, &o) != nil || o.Metadata.Name == "" {
		return ""
	}
	return fmt.Sprintf(" (%s %s/%s)", o.APIVersion, o.Metadata.Namespace, o.Metadata.Name)
}

func failure(uid types.UID, err error) *apixv1.ConversionResponse {
	return &apixv1.ConversionResponse{
		UID:    uid,
		Result: metav1.Status{Status: metav1.StatusFailure, Message: err.Error()},
	}
}
