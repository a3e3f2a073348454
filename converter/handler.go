package converter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
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
// Once ctx is done (the apiserver closed the connection: it timed out or
// went away) it stops before the next object: nobody reads the answer, and
// a LIST of 1000 MeshConfigs costs about a second of CPU.
func (h *Handler) Convert(ctx context.Context, req *apixv1.ConversionRequest) *apixv1.ConversionResponse {
	log := h.log.WithValues("uid", req.UID, "desiredAPIVersion", req.DesiredAPIVersion)
	desired, err := h.desiredVersion(req.DesiredAPIVersion)
	if err != nil {
		// An error, not a decision: the apiserver's read fails with it and
		// the request metrics count it as result "error".
		log.Error(err, "conversion failed")
		return failure(err)
	}
	out := make([]runtime.RawExtension, len(req.Objects))
	var errs []error
	for i, obj := range req.Objects {
		if ctx.Err() != nil {
			err := fmt.Errorf("stopped after %d of %d objects: the request ended (%w)", i, len(req.Objects), context.Cause(ctx))
			log.Error(err, "conversion failed")
			return failure(err)
		}
		raw, err := h.convertObject(obj.Raw, desired)
		if err != nil {
			errs = append(errs, fmt.Errorf("object %d%s: %w", i, describe(obj.Raw), err))
			continue
		}
		out[i] = runtime.RawExtension{Raw: raw}
	}
	if len(errs) > 0 {
		err := utilerrors.NewAggregate(errs)
		log.Error(err, "conversion failed")
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
	if _, err := h.scheme.New(srcGVK); err != nil {
		return nil, fmt.Errorf("apiVersion %q kind %q is not served by this converter (serves %s)", tm.APIVersion, tm.Kind, strings.Join(h.servedVersions(), ", "))
	}
	dstGVK := desired.WithKind(tm.Kind)
	if _, err := h.scheme.New(dstGVK); err != nil {
		return nil, fmt.Errorf("kind %q has no version %s", tm.Kind, desired)
	}
	hub, err := h.hubFor(tm.Kind)
	if err != nil {
		return nil, err
	}
	// Refused before the typed decoding parses it, which can take minutes.
	if e := rules.CostlyQuantity(raw); e != nil {
		return nil, e
	}
	out, err := h.throughHub(raw, srcGVK, hub, dstGVK)
	if err != nil && isQuantityError(err) {
		// The parser's message names neither the field nor the value.
		if e := rules.UnparsableQuantity(raw); e != nil {
			return nil, e
		}
	}
	return out, err
}

// throughHub converts raw, an object of version src, to dst. Every
// conversion goes through the hub's JSON: the exact JSON an old version's
// object came from is restored there (lossless.Changes), and recorded again
// on the way down.
func (h *Handler) throughHub(raw []byte, src, hub, dst schema.GroupVersionKind) ([]byte, error) {
	if src.GroupVersion() != hub.GroupVersion() {
		var err error
		if raw, err = h.toHub(raw, src, hub); err != nil {
			return nil, err
		}
	}
	if dst.GroupVersion() == hub.GroupVersion() {
		return raw, nil
	}
	return h.fromHub(raw, hub, dst)
}

// isQuantityError reports whether err is resource.ParseQuantity's, from
// decoding a quantity the CRD's pattern admits (1e1.5).
func isQuantityError(err error) bool {
	return errors.Is(err, resource.ErrFormatWrong) || errors.Is(err, resource.ErrNumeric) || errors.Is(err, resource.ErrSuffix)
}

// toHub converts raw, an object of the spoke version src, to the hub
// version hub.
func (h *Handler) toHub(raw []byte, src, hub schema.GroupVersionKind) ([]byte, error) {
	spoke, err := h.newSpoke(src)
	if err != nil {
		return nil, err
	}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, spoke); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", src.GroupVersion(), err)
	}
	hubObj, err := h.newHub(hub)
	if err != nil {
		return nil, err
	}
	return convert.ToHub(spoke, hubObj)
}

// fromHub converts raw, a hub object, to the spoke version dst.
func (h *Handler) fromHub(raw []byte, hub, dst schema.GroupVersionKind) ([]byte, error) {
	spoke, err := h.newSpoke(dst)
	if err != nil {
		return nil, err
	}
	if _, err := h.newHub(hub); err != nil {
		return nil, err
	}
	newHub := func() conversion.Hub { o, _ := h.newHub(hub); return o } // checked above
	if err := convert.FromHub(raw, newHub, spoke); err != nil {
		return nil, err
	}
	spoke.GetObjectKind().SetGroupVersionKind(dst)
	out, err := json.Marshal(spoke)
	if err != nil {
		return nil, fmt.Errorf("encoding %s: %w", dst.GroupVersion(), err)
	}
	return out, nil
}

// newSpoke is an empty object of the spoke version gvk.
func (h *Handler) newSpoke(gvk schema.GroupVersionKind) (convert.Spoke, error) {
	obj, err := h.scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	spoke, ok := obj.(convert.Spoke)
	if !ok {
		return nil, fmt.Errorf("%T does not convert through the hub", obj)
	}
	return spoke, nil
}

// newHub is an empty object of the hub version gvk, with its apiVersion and
// kind set.
func (h *Handler) newHub(gvk schema.GroupVersionKind) (conversion.Hub, error) {
	obj, err := h.scheme.New(gvk)
	if err != nil {
		return nil, err
	}
	hub, ok := obj.(conversion.Hub)
	if !ok {
		return nil, fmt.Errorf("%T is not a hub", obj)
	}
	hub.GetObjectKind().SetGroupVersionKind(gvk)
	return hub, nil
}

// hubFor is the hub version of kind, the one the others convert through.
func (h *Handler) hubFor(kind string) (schema.GroupVersionKind, error) {
	for _, gv := range h.scheme.PrioritizedVersionsForGroup(h.group) {
		o, err := h.scheme.New(gv.WithKind(kind))
		if err != nil {
			continue
		}
		if _, ok := o.(conversion.Hub); ok {
			return gv.WithKind(kind), nil
		}
	}
	return schema.GroupVersionKind{}, fmt.Errorf("kind %s of group %s has no hub version", kind, h.group)
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
