// Package validator is the validating admission webhook of the mesh: MeshConfig
// (every served version) and FSM's policy kinds. NewHandler returns a
// controller-runtime admission.Handler; serve it with reviewhttp.NewAdmission at
// /validate. Webhooks are its ValidatingWebhookConfiguration entries (what
// the apiserver sends, and from which namespaces); Rules lists every resource
// and operation it handles.
package validator

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/internal/warning"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
	"github.com/flomesh-io/fsm-webhooks/validator/policy"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// Defaults for Options.
const (
	DefaultMeshConfigName = fsmnames.MeshConfigName
	DefaultFSMNamespace   = "fsm-system"
	DefaultMeshName       = "fsm"
)

// Options configure the handler.
type Options struct {
	// Reader reads the objects some rules compare against: Namespaces (get),
	// MeshConfigs (get), and IngressBackends, AccessControls,
	// UpstreamTrafficSettings, EgressGateways (list), all but Namespaces as
	// unstructured objects. A cache-backed client in production, one that
	// caches unstructured objects too (client.CacheOptions.Unstructured).
	// Required.
	Reader client.Reader
	// MeshName names the mesh in messages (default "fsm").
	MeshName string
	// FSMNamespace holds the mesh's MeshConfig (default "fsm-system").
	FSMNamespace string
	// MeshConfigName is the one MeshConfig the mesh reads (default
	// "fsm-mesh-config").
	MeshConfigName string
	// ValidateTrafficTarget enables the TrafficTarget namespace rule (FSM
	// flag --validate-traffic-target, on by default there).
	ValidateTrafficTarget bool
	// StrictPolicyValidation denies what FSM v1.5.1 as deployed never
	// enforced (policy.Finding.BeyondFSM: the kinds its registration skips,
	// the rules its bugs skip). Off, those are warnings, so manifests FSM
	// accepted keep applying after the switch (flag
	// --strict-policy-validation).
	StrictPolicyValidation bool
	// Logger for decisions; requests are logged at V(1), denials at V(0),
	// failures (result "error": a 5xx or BadRequest) once as errors.
	Logger logr.Logger
}

// HandlerCaches are the kinds the handler reads through Reader that every
// cluster serving it has (Namespaces; the MeshConfig, as unstructured):
// serve registers their informers before the cache starts and the validator
// is not ready until they have synced (webhooks.CachesSynced). The
// policy.flomesh.io kinds are left to controller-runtime to start at their
// first read: their CRDs are FSM's and may not be installed, and an
// informer that cannot list never syncs.
func HandlerCaches() []client.Object {
	mc := &unstructured.Unstructured{}
	mc.SetGroupVersionKind(schema.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.StorageVersion, Kind: meshconfig.Kind})
	return []client.Object{&corev1.Namespace{}, mc}
}

// Handler validates admission requests. Build it with NewHandler.
type Handler struct {
	opts Options
}

var _ admission.Handler = (*Handler)(nil)

// NewHandler returns the validating handler. A nil Reader is a programming
// error reported on first use as an internal error, never a panic.
func NewHandler(o Options) *Handler {
	if o.MeshName == "" {
		o.MeshName = DefaultMeshName
	}
	if o.FSMNamespace == "" {
		o.FSMNamespace = DefaultFSMNamespace
	}
	if o.MeshConfigName == "" {
		o.MeshConfigName = DefaultMeshConfigName
	}
	if o.Logger.GetSink() == nil {
		o.Logger = logr.Discard()
	}
	return &Handler{opts: o}
}

// Handle implements admission.Handler. Serve it with reviewhttp.NewAdmission:
// the uid, panic recovery and request metrics (result allowed, warned,
// denied, error) are the shared request path's.
func (h *Handler) Handle(ctx context.Context, req admission.Request) admission.Response {
	gvk := schema.GroupVersionKind{Group: req.Kind.Group, Version: req.Kind.Version, Kind: req.Kind.Kind}
	log := h.opts.Logger.WithValues("gvk", gvk.String(), "operation", req.Operation,
		"namespace", req.Namespace, "name", req.Name, "uid", req.UID)
	resp := h.handle(ctx, gvk, req)
	switch {
	case reviewhttp.Failed(resp):
		// Once, as an error: result "error" in the request metrics, which
		// the admission error alert sends the reader to the logs for; not
		// an object the user must fix.
		log.Error(errors.New(resp.Result.Message), "request failed", "code", resp.Result.Code)
	case !resp.Allowed && resp.Result != nil:
		// A denied dry run changed nothing and its sender reads the whole
		// answer: at V(1). Every replica's readiness Probe is one (every
		// 20 s, named as the mesh's own MeshConfig), and at info it read as
		// someone writing a bad fsm-mesh-config over and over.
		if req.DryRun != nil && *req.DryRun {
			log = log.V(1)
		}
		log.Info("denied", "code", resp.Result.Code, "message", resp.Result.Message)
	default:
		log.V(1).Info("allowed", "warnings", len(resp.Warnings))
	}
	return resp
}

func (h *Handler) handle(ctx context.Context, gvk schema.GroupVersionKind, req admission.Request) admission.Response {
	if gvk.Group == meshconfig.Group && gvk.Kind == meshconfig.Kind && meshconfig.IsServedVersion(gvk.Version) {
		return h.meshConfig(ctx, gvk.Version, req)
	}
	v, ok := policyValidators[gvk]
	if !ok {
		return reviewhttp.BadRequest(errors.New("unknown gvk: " + gvk.String()))
	}
	switch req.Operation {
	case admissionv1.Create, admissionv1.Update:
	default:
		// Only CREATE and UPDATE are routed for policy kinds (see Rules).
		return admission.Allowed("")
	}
	if len(req.Object.Raw) == 0 {
		return reviewhttp.BadRequest(fmt.Errorf("%s %s: no object in the request", req.Operation, gvk.Kind))
	}
	found, err := v(ctx, h, req, req.Object.Raw)
	if err != nil {
		var bad badObjectError
		if errors.As(err, &bad) {
			return reviewhttp.BadRequest(err)
		}
		return admission.Errored(http.StatusInternalServerError, err)
	}
	var stored []policy.Finding
	if req.Operation == admissionv1.Update && len(found) > 0 && len(req.OldObject.Raw) > 0 {
		// Ratchet: the stored object's own findings only warn.
		stored, err = v(ctx, h, req, req.OldObject.Raw)
		var bad badObjectError
		switch {
		case errors.As(err, &bad):
			stored = nil // an unreadable stored object excuses nothing
		case err != nil:
			return admission.Errored(http.StatusInternalServerError, fmt.Errorf("validating the stored object: %w", err))
		}
	}
	verdict := policy.Decide(found, stored, h.opts.StrictPolicyValidation)
	if len(verdict.Denials) > 0 {
		return reviewhttp.Denied(strings.Join(verdict.Denials, "\n")).WithWarnings(whole(verdict.Warnings)...)
	}
	return admission.Allowed("").WithWarnings(whole(verdict.Warnings)...)
}

// meshConfig validates MeshConfig CREATE, UPDATE and DELETE.
func (h *Handler) meshConfig(ctx context.Context, version string, req admission.Request) admission.Response {
	if req.Operation == admissionv1.Delete {
		return h.meshConfigDelete(ctx, req)
	}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if len(req.Object.Raw) == 0 {
		return reviewhttp.BadRequest(fmt.Errorf("%s MeshConfig: no object in the request", req.Operation))
	}
	var res meshconfig.Result
	if req.Operation == admissionv1.Update {
		res = meshconfig.ValidateUpdate(version, req.Object.Raw, req.OldObject.Raw)
	} else {
		res = meshconfig.Validate(version, req.Object.Raw)
	}
	// The checks below convert the object, for a large one most of the
	// cost; once the request is over (the apiserver timed out or went
	// away; reviewhttp.AnswerBudget ends it first, so this message reaches
	// the user) nobody reads the answer.
	stopped := func(err error) admission.Response {
		if len(res.Errors) > 0 {
			// Denied already: those errors still tell the user why.
			return invalidMeshConfig(cmp.Or(res.Name, req.Name), res.Errors).WithWarnings(whole(res.Warnings)...)
		}
		return admission.Errored(http.StatusGatewayTimeout, fmt.Errorf("%s MeshConfig %s: stopped before checking the size of its old-version views: %w", req.Operation, cmp.Or(res.Name, req.Name), err))
	}
	sizeErrs, err := downConversionSizeErrors(ctx, version, req.Object.Raw)
	if err != nil {
		return stopped(err)
	}
	if len(sizeErrs) > 0 {
		var storedErrs field.ErrorList
		if req.Operation == admissionv1.Update && len(req.OldObject.Raw) > 0 {
			if storedErrs, err = downConversionSizeErrors(ctx, version, req.OldObject.Raw); err != nil {
				return stopped(err)
			}
		}
		if len(storedErrs) > 0 {
			// The stored object already breaks those reads: an edit (a
			// finalizer removed, the data shrunk but not enough yet) must
			// not be stuck behind it.
			for _, e := range sizeErrs {
				res.Warnings = append(res.Warnings, ratchet.Warning(e.Error()))
			}
		} else {
			res.Errors = append(res.Errors, sizeErrs...)
		}
	}
	// The object carries the name (a generated one is only there).
	name, namespace := cmp.Or(res.Name, req.Name), cmp.Or(res.Namespace, req.Namespace)
	idErrs := meshconfig.ValidateIdentity(name, namespace, h.opts.FSMNamespace, h.opts.MeshConfigName)
	if req.Operation == admissionv1.Update {
		// Name and namespace are immutable, so on UPDATE the stored object
		// already had this error: it ratchets like any other, and a stray
		// MeshConfig (left over from FSM) can still be edited and have its
		// finalizers removed instead of staying Terminating forever.
		for _, e := range idErrs {
			res.Warnings = append(res.Warnings, ratchet.Warning(e.Error()))
		}
	} else {
		res.Errors = append(res.Errors, idErrs...)
	}
	if len(res.Errors) > 0 {
		return invalidMeshConfig(name, res.Errors).WithWarnings(whole(res.Warnings)...)
	}
	return admission.Allowed("").WithWarnings(whole(res.Warnings)...)
}

// invalidMeshConfig is the denial for field errors: a 422 Invalid status listing every
// error with its path, as the apiserver's own validation reports them.
func invalidMeshConfig(name string, errs field.ErrorList) admission.Response {
	st := apierrors.NewInvalid(schema.GroupKind{Group: meshconfig.Group, Kind: meshconfig.Kind}, name, shortValues(errs)).ErrStatus
	return admission.Response{AdmissionResponse: admissionv1.AdmissionResponse{Allowed: false, Result: &st}}
}

// maxShownValue bounds a string value quoted in a MeshConfig denial. A
// conversion annotation's JSON (up to the apiserver's 256 KiB of
// annotations), or any huge string, would otherwise be repeated whole in the
// message and again in its cause.
const maxShownValue = 256

// shortValues returns errs with each string value longer than maxShownValue
// cut to its first maxShownValue bytes (on a character boundary), marked
// with its full size; a number as written (a mistyped value, any length)
// too, still shown unquoted. Only for display: ratcheting compares the full
// values before this.
func shortValues(errs field.ErrorList) field.ErrorList {
	out := make(field.ErrorList, len(errs))
	for i, e := range errs {
		var s string
		switch v := e.BadValue.(type) {
		case string:
			s = v
		case json.Number:
			s = string(v)
		}
		if len(s) <= maxShownValue {
			out[i] = e
			continue
		}
		cut := maxShownValue
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		shown := fmt.Sprintf("%s...[%d bytes in all]", s[:cut], len(s))
		short := *e
		short.BadValue = shown
		if _, ok := e.BadValue.(json.Number); ok {
			short.BadValue = json.Number(shown)
		}
		out[i] = &short
	}
	return out
}

// meshConfigDelete refuses to delete the mesh's own MeshConfig while its
// namespace lives: every FSM component reads it, and losing it takes the
// mesh down. The advice is the chart's uninstall, whose pre-delete hook
// removes the webhook configurations, then the servers, then this
// MeshConfig; never deleting the namespace, which also deletes the mesh CA
// Secret and leaves the cluster-scoped webhooks calling a server that is
// gone. A namespace being deleted anyway lets its MeshConfig go.
func (h *Handler) meshConfigDelete(ctx context.Context, req admission.Request) admission.Response {
	if req.Namespace != h.opts.FSMNamespace || req.Name != h.opts.MeshConfigName {
		return admission.Allowed("")
	}
	if h.opts.Reader == nil {
		return admission.Errored(http.StatusInternalServerError, errors.New("validator: no Reader configured"))
	}
	var ns corev1.Namespace
	err := h.opts.Reader.Get(ctx, client.ObjectKey{Name: req.Namespace}, &ns)
	switch {
	case apierrors.IsNotFound(err):
		return admission.Allowed("namespace " + req.Namespace + " is gone")
	case err != nil:
		return admission.Errored(http.StatusInternalServerError, fmt.Errorf("reading namespace %s: %w", req.Namespace, err))
	case ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating:
		return admission.Allowed("namespace " + req.Namespace + " is being deleted")
	}
	return admission.Denied(fmt.Sprintf(
		"MeshConfig %s/%s is the configuration of mesh %q and cannot be deleted while the mesh is installed; "+
			"to remove the mesh, uninstall it (helm uninstall <release> --namespace %s): its pre-delete hook "+
			"takes the webhooks down first and then this MeshConfig",
		req.Namespace, req.Name, h.opts.MeshName, req.Namespace))
}

// badObjectError marks an undecodable object: the client's fault (400).
type badObjectError struct{ error }

func (e badObjectError) Unwrap() error { return e.error }

// policyValidator finds the problems of one object (raw: the request's
// object or, for ratcheting, its old object); req supplies the name and
// namespace an object without metadata lacks.
type policyValidator func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error)

func gvkOf(groupVersion, kind string) schema.GroupVersionKind {
	return schema.FromAPIVersionAndKind(groupVersion, kind)
}

var policyValidators = map[schema.GroupVersionKind]policyValidator{
	gvkOf(policy.AccessGroupVersion, policy.KindTrafficTarget): func(_ context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		if !h.opts.ValidateTrafficTarget {
			return nil, nil
		}
		var t policy.TrafficTarget
		if err := decode(raw, req, &t, &t.Metadata); err != nil {
			return nil, err
		}
		return policy.ValidateTrafficTarget(&t), nil
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindIngressBackend): func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		return h.backendPolicy(ctx, req, raw, policy.KindIngressBackend, policy.ValidateIngressBackend)
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindAccessControl): func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		return h.backendPolicy(ctx, req, raw, policy.KindAccessControl, policy.ValidateAccessControl)
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindEgress): func(_ context.Context, _ *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		var e policy.Egress
		if err := decode(raw, req, &e, &e.Metadata); err != nil {
			return nil, err
		}
		return policy.ValidateEgress(&e), nil
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindUpstreamTrafficSetting): func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		var u policy.UpstreamTrafficSetting
		if err := decode(raw, req, &u, &u.Metadata); err != nil {
			return nil, err
		}
		others, err := list[policy.UpstreamTrafficSetting](ctx, h, policy.KindUpstreamTrafficSetting, u.Metadata.Namespace)
		if err != nil {
			return nil, err
		}
		return policy.ValidateUpstreamTrafficSetting(&u, others), nil
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindEgressGateway): func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		var g policy.EgressGateway
		if err := decode(raw, req, &g, &g.Metadata); err != nil {
			return nil, err
		}
		if len(g.Spec.Global) == 0 {
			return nil, nil
		}
		others, err := list[policy.EgressGateway](ctx, h, policy.KindEgressGateway, "")
		if err != nil {
			return nil, err
		}
		return policy.ValidateEgressGateway(&g, others), nil
	},
	gvkOf(policy.PolicyGroupVersion, policy.KindAccessCert): func(ctx context.Context, h *Handler, _ admission.Request, raw []byte) ([]policy.Finding, error) {
		on, err := h.featureFlag(ctx, "enableAccessCertPolicy")
		if err != nil {
			return nil, err
		}
		return policy.ValidateAccessCert(on, raw), nil
	},
	gvkOf(policy.PluginGroupVersion, policy.KindPlugin): func(ctx context.Context, h *Handler, req admission.Request, raw []byte) ([]policy.Finding, error) {
		var p policy.Plugin
		if err := decode(raw, req, &p, &p.Metadata); err != nil {
			return nil, err
		}
		on, err := h.featureFlag(ctx, "enablePluginPolicy")
		if err != nil {
			return nil, err
		}
		return policy.ValidatePluginKind(on, &p, raw), nil
	},
	gvkOf(policy.PluginGroupVersion, policy.KindPluginChain):  pluginFlagOnly,
	gvkOf(policy.PluginGroupVersion, policy.KindPluginConfig): pluginFlagOnly,
}

func pluginFlagOnly(ctx context.Context, h *Handler, _ admission.Request, raw []byte) ([]policy.Finding, error) {
	on, err := h.featureFlag(ctx, "enablePluginPolicy")
	if err != nil {
		return nil, err
	}
	return policy.ValidatePluginKind(on, nil, raw), nil
}

// decode reads raw into the lenient type and fills its missing name and
// namespace (meta points into it) from the request.
func decode(raw []byte, req admission.Request, into any, meta *policy.Meta) error {
	if err := policy.Decode(raw, into); err != nil {
		return badObjectError{err}
	}
	meta.Fill(req.Name, req.Namespace)
	return nil
}

func (h *Handler) backendPolicy(ctx context.Context, req admission.Request, raw []byte, kind string,
	validate func(*policy.BackendPolicy, []policy.BackendPolicy) []policy.Finding) ([]policy.Finding, error) {
	var p policy.BackendPolicy
	if err := decode(raw, req, &p, &p.Metadata); err != nil {
		return nil, err
	}
	var others []policy.BackendPolicy
	if len(p.Spec.Backends) > 0 {
		var err error
		if others, err = list[policy.BackendPolicy](ctx, h, kind, p.Metadata.Namespace); err != nil {
			return nil, err
		}
	}
	return validate(&p, others), nil
}

// list reads every object of a policy.flomesh.io kind (in namespace, or the
// whole cluster when empty) into the lenient type T; unknown fields are
// ignored.
func list[T any](ctx context.Context, h *Handler, kind, namespace string) ([]T, error) {
	if h.opts.Reader == nil {
		return nil, errors.New("validator: no Reader configured")
	}
	var ul unstructured.UnstructuredList
	ul.SetGroupVersionKind(gvkOf(policy.PolicyGroupVersion, kind+"List"))
	var opts []client.ListOption
	if namespace != "" {
		opts = append(opts, client.InNamespace(namespace))
	}
	if err := h.opts.Reader.List(ctx, &ul, opts...); err != nil {
		return nil, fmt.Errorf("listing %s in namespace %q: %w", kind, namespace, err)
	}
	out := make([]T, len(ul.Items))
	for i := range ul.Items {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(ul.Items[i].Object, &out[i]); err != nil {
			return nil, fmt.Errorf("reading %s %s/%s: %w", kind, ul.Items[i].GetNamespace(), ul.Items[i].GetName(), err)
		}
	}
	return out, nil
}

// featureFlag reads spec.featureFlags.<name> of the mesh's MeshConfig. A
// missing MeshConfig (or MeshConfig CRD) means every flag is off (FSM's
// defaults).
func (h *Handler) featureFlag(ctx context.Context, name string) (bool, error) {
	if h.opts.Reader == nil {
		return false, errors.New("validator: no Reader configured")
	}
	var mc unstructured.Unstructured
	mc.SetGroupVersionKind(schema.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.StorageVersion, Kind: meshconfig.Kind})
	err := h.opts.Reader.Get(ctx, client.ObjectKey{Namespace: h.opts.FSMNamespace, Name: h.opts.MeshConfigName}, &mc)
	if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading MeshConfig %s/%s: %w", h.opts.FSMNamespace, h.opts.MeshConfigName, err)
	}
	on, _, err := unstructured.NestedBool(mc.Object, "spec", "featureFlags", name)
	if err != nil {
		return false, fmt.Errorf("MeshConfig %s/%s: spec.featureFlags.%s: %w", h.opts.FSMNamespace, h.opts.MeshConfigName, name, err)
	}
	return on, nil
}

// whole cuts each warning to what the apiserver passes on whole
// (internal/warning): past 4096 runes in a response it cuts every warning to
// 256, a short one's end included. The rules' own warnings fit already; a
// denial message ratcheted into one, quoting user values, may not.
func whole(ws []string) []string {
	out := make([]string, len(ws))
	for i, w := range ws {
		out[i] = warning.Fit(w, "")
	}
	return out
}
