package converter

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Handler decides ConversionReview (apiextensions.k8s.io/v1) requests for the
// kinds of one API group whose versions implement controller-runtime's
// conversion.Hub/Convertible. Serve it with reviewhttp.NewConversion, which
// owns the request path (limits, decoding, uid, panic recovery, metrics).
//
// The decision is written here rather than taken from controller-runtime's
// pkg/webhook/conversion because that one refuses objects that are already
// in the desired version and stops at the first bad object instead of
// reporting all of them.
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

var _ reviewhttp.Converter = &Handler{}

// Convert answers one ConversionRequest. Every object is converted to
// req.DesiredAPIVersion; objects already in that version are returned as
// sent. If any object fails, the whole response fails with every object's
// error in the message, since the apiserver cannot use a partial answer.
func (h *Handler) Convert(req *apixv1.ConversionRequest) *apixv1.ConversionResponse {
	log := h.log.WithValues("uid", req.UID, "desiredAPIVersion", req.DesiredAPIVersion)
	desired, err := h.desiredVersion(req.DesiredAPIVersion)
	if err != nil {
		log.Info("conversion failed", "reason", err.Error())
		return failure(err)
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
		err := utilerrors.NewAggregate(errs)
		log.Info("conversion failed", "reason", err.Error())
		return failure(err)
	}
	log.V(1).Info("converted", "objects", len(out))
	return &apixv1.ConversionResponse{ConvertedObjects: out, Result: metav1.Status{Status: metav1.StatusSuccess}}
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

func failure(err error) *apixv1.ConversionResponse {
	return &apixv1.ConversionResponse{Result: metav1.Status{Status: metav1.StatusFailure, Message: err.Error()}}
}
