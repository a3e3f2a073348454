// Package meshconfig validates config.flomesh.io MeshConfig objects of every
// served version (v1alpha1, v1alpha2, v1alpha3). It is pure: JSON in, field
// errors and warnings out, no I/O; the admission handler in package validator
// wires it to requests.
package meshconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"

	jsonv2 "github.com/go-json-experiment/json"
	jsonv1 "github.com/go-json-experiment/json/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/check"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
)

// Group, Kind and the served versions of the MeshConfig API (the group and
// resource are FSM's names, spelled in fsmnames).
const (
	Group    = fsmnames.ConfigGroup
	Kind     = "MeshConfig"
	Resource = fsmnames.MeshConfigResource

	V1alpha1 = "v1alpha1"
	V1alpha2 = "v1alpha2"
	V1alpha3 = "v1alpha3"

	// StorageVersion is the version the other versions convert to.
	StorageVersion = V1alpha3
)

// Versions lists the served versions, oldest first.
var Versions = []string{V1alpha1, V1alpha2, V1alpha3}

// Allowed values. Exported so tests and docs share one list. The ones the
// injector depends on come from package meshconfig/rules.
var (
	// ControlPlaneLogLevels is zerolog's set used by FSM components.
	ControlPlaneLogLevels = []string{"trace", "debug", "info", "warn", "error", "fatal", "panic", "disabled"}
	// TLSVersions in increasing order; TLS_AUTO lets the proxy choose.
	TLSVersions        = []string{"TLS_AUTO", "TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"}
	InterceptionModes  = rules.InterceptionModes
	ServiceAccessModes = []string{"ip", "domain", "mixed"}
	LocalProxyModes    = rules.LocalProxyModes
	IngressTypes       = []string{"LoadBalancer", "NodePort"}
	FLBUpstreamModes   = []string{"NodePort", "Endpoint"}
	EgressGatewayModes = []string{"http2tunnel", "sock5"}
	LBTypes            = []string{"ActiveActive", "FailOver"}
	PullPolicies       = []string{"Always", "IfNotPresent", "Never"}
)

// IsServedVersion reports whether v is a served MeshConfig version.
func IsServedVersion(v string) bool { return slices.Contains(Versions, v) }

// DeprecationWarning is the warning for a deprecated served version.
func DeprecationWarning(version string) string {
	return fmt.Sprintf("%s/%s %s is deprecated; use %s/%s %s", Group, version, Kind, Group, StorageVersion, Kind)
}

// IsDeprecatedVersion reports whether v is served but deprecated.
func IsDeprecatedVersion(v string) bool { return v == V1alpha1 || v == V1alpha2 }

// Result of validating one object.
type Result struct {
	// Errors deny the request.
	Errors field.ErrorList
	// Warnings are returned to the client; they never deny.
	Warnings []string
	// Name and Namespace from the object's metadata (empty if unreadable).
	Name, Namespace string
}

// Validate checks a whole MeshConfig object (JSON as sent in an admission
// request) of the given served version. Every problem is reported, not just
// the first. A v1alpha1/v1alpha2 object is also checked as the v1alpha3
// object it is stored as, and the data its conversion annotations carry
// into other versions is checked by those versions' rules (stored.go).
func Validate(version string, obj []byte) Result {
	r, own, _ := validate(version, obj)
	r.Warnings = append(r.Warnings, storedSchemaWarnings(own)...)
	return r
}

// validate is Validate without the warning for the v1alpha3 schema errors
// of the object an old version's write is stored as (own), which
// ValidateUpdate first ratchets. schemaAnn are the schema errors a
// conversion annotation brings, left out of r while the annotation's own
// rules deny it.
func validate(version string, obj []byte) (r Result, own, schemaAnn field.ErrorList) {
	r, annotations := validateView(version, obj)
	if e := rules.CostlyQuantity(obj); e != nil {
		// The checks below decode the object, or an annotation's data,
		// as a typed MeshConfig, which parses the quantity: seconds to
		// minutes of the CPU pod admission shares. The view refused it
		// already when it is one of the object's own.
		if !slices.ContainsFunc(r.Errors, func(o *field.Error) bool { return o.Field == e.Field && o.Detail == e.Detail }) {
			r.Errors = append(r.Errors, e)
		}
		return r, nil, nil
	}
	if !IsDeprecatedVersion(version) {
		if a, ok := annotations[lossless.AnnotationV1Alpha2Fields]; ok {
			r.Errors = append(r.Errors, legacyFieldErrors(obj, a)...)
		}
		r.Errors = append(r.Errors, oldVersionAnnotationErrors(annotations)...)
		return r, nil, nil
	}
	_, fields := annotations[lossless.AnnotationV1Alpha3Fields]
	_, exact := annotations[lossless.AnnotationV1Alpha3JSON]
	var brought field.ErrorList
	if fields || exact {
		errs, warnings := hubFieldProblems(version, obj, annotations)
		brought = errs
		r.Errors = append(r.Errors, errs...)
		r.Warnings = append(r.Warnings, warnings...)
	}
	schemaAnn, own = storedSchemaProblems(version, obj)
	if len(brought) == 0 { // else denied already, by the annotation's own rules
		r.Errors = append(r.Errors, schemaAnn...)
	}
	return r, own, schemaAnn
}

// validateView is Validate for the object's own fields, read through the
// version-neutral view. It also returns the object's annotations (nil when
// it has none or is not JSON).
func validateView(version string, obj []byte) (Result, map[string]string) {
	var r Result
	if !IsServedVersion(version) {
		r.Errors = field.ErrorList{field.NotSupported(field.NewPath("apiVersion"), Group+"/"+version, servedAPIVersions())}
		return r, nil
	}
	var v view
	if err := decodeView(obj, &v); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) {
			// No value to show: the object itself does not parse.
			r.Errors = field.ErrorList{field.Invalid(field.NewPath("spec"), field.OmitValueType{}, "the object is not valid JSON: "+err.Error())}
			return r, nil
		}
		// encoding/json decodes the rest after a type mismatch, so the
		// remaining rules still run and everything is reported at once.
		r.Errors = append(r.Errors, typeError(obj, te))
	}
	specErrs := validateSpec(&v.Spec, field.NewPath("spec"))
	if len(r.Errors) > 0 {
		// The mistyped field decoded as a zero value; its rules would only
		// repeat the type error in other words.
		bad := r.Errors[0].Field
		specErrs = slices.DeleteFunc(specErrs, func(e *field.Error) bool {
			return e.Field == bad || strings.HasPrefix(e.Field, bad+".") || strings.HasPrefix(e.Field, bad+"[")
		})
	}
	r.Errors = append(r.Errors, specErrs...)
	r.Name, r.Namespace = v.Metadata.Name, v.Metadata.Namespace
	if IsDeprecatedVersion(version) {
		// Same text as the CRD's deprecationWarning, so kubectl shows it once.
		r.Warnings = append(r.Warnings, DeprecationWarning(version))
		r.Warnings = append(r.Warnings, deprecatedFields(&v.Spec)...)
	}
	// Field warnings read "<field path>: <detail>" (hubFieldProblems renames
	// the path of one an annotation brings).
	r.Warnings = append(r.Warnings, ipv6ExclusionWarnings(&v.Spec.Traffic, field.NewPath("spec", "traffic", "outboundIPRangeExclusionList"))...)
	r.Warnings = append(r.Warnings, fsmInt16Warnings(&v.Spec, field.NewPath("spec"))...)
	if pipy, replaced, _ := rules.SidecarLogLevel(nil, v.Spec.Sidecar.LogLevel); replaced {
		r.Warnings = append(r.Warnings, fmt.Sprintf("spec.sidecar.logLevel: %q is not a level Pipy knows: sidecars start with --log-level=%s (FSM passed it on and Pipy exited at start); write one of %s",
			v.Spec.Sidecar.LogLevel, pipy, strings.Join(rules.PipyLogLevels, ", ")))
	}
	return r, v.Metadata.Annotations
}

// ValidateUpdate is Validate for an UPDATE: an error the stored object
// already has, unchanged, becomes a warning instead of a denial (ratcheting,
// as the apiserver does for CRD schemas), so objects stored before this
// webhook existed can still be edited and repaired. A new or changed problem
// still denies.
func ValidateUpdate(version string, obj, old []byte) Result {
	r, own, schemaAnn := validate(version, obj)
	if len(own) > 0 && len(old) > 0 && rules.CostlyQuantity(old) == nil {
		// Only what this write breaks: the stored object's own are
		// warned of at the write that made them.
		_, before := storedSchemaProblems(version, old)
		own = slices.DeleteFunc(own, func(e *field.Error) bool { return containsError(before, e) })
	}
	r.Warnings = append(r.Warnings, storedSchemaWarnings(own)...)
	if len(r.Errors) == 0 || len(old) == 0 {
		return r
	}
	fresh, stored := ratchet.Split(r.Errors, Validate(version, old).Errors, storedErrorKey, sameStoredError)
	// A costly quantity never ratchets: with it the rest of the object
	// went unchecked (validate).
	stored = slices.DeleteFunc(stored, func(e *field.Error) bool {
		if strings.HasSuffix(e.Detail, rules.QuantityDetail) {
			fresh = append(fresh, e)
			return true
		}
		return false
	})
	if len(schemaAnn) > 0 && !slices.ContainsFunc(fresh, isAnnotationError) && !slices.ContainsFunc(r.Errors, func(e *field.Error) bool { return containsError(schemaAnn, e) }) {
		// The annotation's own errors were all stored already, so they
		// ratchet; the schema errors it brings, left out while those
		// denied, now stand on their own, ratcheted the same way.
		_, _, before := validate(version, old)
		f, s := ratchet.Split(schemaAnn, before, storedErrorKey, sameStoredError)
		fresh, stored = append(fresh, f...), append(stored, s...)
	}
	if len(stored) > 0 && !sameSpec(obj, old) && convert.ReadAsRelabelled(old) {
		// The stored object is an old version's write stored relabelled,
		// whose annotation the converter reads: it may stay while the spec
		// it stood for does (metadata edits, a finalizer removed), not
		// while a v1alpha3 spec (image, misc, connector) is written under
		// it, after which the converter ignores the data it holds. On a
		// stored v1alpha3 object it is ignored already (a converter from
		// before AnnotationV1Alpha3JSON existed stored that one as any
		// annotation it did not know), and a spec edit changes nothing.
		stored = slices.DeleteFunc(stored, func(e *field.Error) bool {
			if isOldVersionAnnotationError(e) {
				fresh = append(fresh, e)
				return true
			}
			return false
		})
	}
	for _, e := range stored {
		r.Warnings = append(r.Warnings, ratchet.Warning(e.Error()))
	}
	r.Errors = fresh
	return r
}

// oldVersionAnnotationErrors refuses, on a v1alpha3 object, the annotations
// only a v1alpha1/v1alpha2 object carries (the converter takes them off on
// the way up). The converter reads them on a stored object only while it is
// an old version's write stored relabelled while conversion was off
// (convert.ReadAsRelabelled: no v1alpha3-only section). A v1alpha3 write,
// whose schema requires spec.image, misc and connector, is none: the
// converter ignores them there, so the v1alpha3 data such an annotation
// holds (a relabelled object edited in v1alpha3, old metadata copied) would
// silently be in no version's view.
func oldVersionAnnotationErrors(annotations map[string]string) field.ErrorList {
	var errs field.ErrorList
	for _, p := range []struct {
		key  string
		path *field.Path
	}{{lossless.AnnotationV1Alpha3Fields, hubFieldsPath}, {lossless.AnnotationV1Alpha3JSON, hubJSONPath}} {
		if a, ok := annotations[p.key]; ok {
			errs = append(errs, field.Invalid(p.path, a, fmt.Sprintf(
				"only a %s/%s or %s object carries this annotation (the converter takes it off on the way up): on a %s object, "+
					"which holds spec.image, spec.misc and spec.connector, the converter ignores it, so what it holds (the %s "+
					"spec.image, spec.ingress and other fields an old version's write stored while conversion was off kept in it) "+
					"is in no version's view; remove the annotation (first moving into the spec what this object should keep of the data it holds), "+
					"or, for an object stored that way, write it back once through %s (kubectl get meshconfigs.%s.%s <name> -o json | kubectl replace -f -), "+
					"which stores the %s object it stands for",
				Group, V1alpha1, V1alpha2, V1alpha3, V1alpha3, V1alpha2, V1alpha2, Group, V1alpha3)))
		}
	}
	return errs
}

// isOldVersionAnnotationError reports whether e is one of
// oldVersionAnnotationErrors.
func isOldVersionAnnotationError(e *field.Error) bool {
	return e.Type == field.ErrorTypeInvalid && (e.Field == hubFieldsPath.String() || e.Field == hubJSONPath.String()) &&
		strings.HasPrefix(e.Detail, "only a ")
}

// sameSpec reports whether two objects' specs are the same JSON value,
// numbers compared as written (either undecodable: not the same).
func sameSpec(a, b []byte) bool {
	spec := func(obj []byte) (any, bool) {
		v, err := lossless.DecodeJSON(obj)
		if err != nil {
			return nil, false
		}
		m, ok := v.(map[string]any)
		return m["spec"], ok
	}
	x, okX := spec(a)
	y, okY := spec(b)
	return okX && okY && reflect.DeepEqual(x, y)
}

// isAnnotationError reports whether e is at a conversion annotation.
func isAnnotationError(e *field.Error) bool {
	return strings.HasPrefix(e.Field, hubFieldsPath.String()) || strings.HasPrefix(e.Field, hubJSONPath.String())
}

func sameError(o, e *field.Error) bool {
	return o.Type == e.Type && o.Field == e.Field && o.Detail == e.Detail && reflect.DeepEqual(o.BadValue, e.BadValue)
}

// sameStoredError is sameError for ratcheting: list indices are ignored (in
// the path and in a detail naming another entry), so a stored bad entry is
// the same problem wherever in its list it now is: adding, removing or
// reordering valid entries moves it but does not change it. Problems still
// count as a multiset (ratchet.Split), so a second copy of it is new.
func sameStoredError(o, e *field.Error) bool {
	return o.Type == e.Type && withoutIndices(o.Field) == withoutIndices(e.Field) &&
		withoutIndices(o.Detail) == withoutIndices(e.Detail) && reflect.DeepEqual(o.BadValue, e.BadValue)
}

// storedErrorKey is equal for two errors sameStoredError finds the same
// (ratchet.Split's key): the value itself only when it is a scalar.
func storedErrorKey(e *field.Error) string {
	k := string(e.Type) + "\x00" + withoutIndices(e.Field) + "\x00" + withoutIndices(e.Detail) + "\x00" + fmt.Sprintf("%T", e.BadValue)
	switch v := e.BadValue.(type) {
	case string, bool, int, int32, int64, uint, uint32, uint64, float32, float64, json.Number:
		k += "\x00" + fmt.Sprint(v)
	}
	return k
}

// listIndex is a list index in a field path, as field.Path prints it.
var listIndex = regexp.MustCompile(`\[[0-9]+\]`)

func withoutIndices(s string) string {
	if !strings.Contains(s, "[") {
		return s
	}
	return listIndex.ReplaceAllString(s, "[*]")
}

func servedAPIVersions() []string {
	out := make([]string, len(Versions))
	for i, v := range Versions {
		out[i] = Group + "/" + v
	}
	return out
}

// fastDecode reads JSON as encoding/json would (names matched
// case-insensitively, with strings.EqualFold: v2 alone also ignores '-' and
// '_', so "observability-" would fill observability, which FuzzDecodeViewParity
// found) in one pass; go-json-experiment/json decodes a full MeshConfig in
// about a third of encoding/json's time.
var fastDecode = jsonv2.JoinOptions(jsonv2.MatchCaseInsensitiveNames(true), jsonv1.MatchCaseSensitiveDelimiter(true))

// decodeView decodes obj into v. Anything the fast decoder refuses (a type
// mismatch, duplicate names, invalid UTF-8, bad syntax) is decoded again by
// encoding/json, whose errors the rules report and which keeps decoding past
// a type mismatch so every other rule still runs. Objects the apiserver sends
// never take that path: its schema has already checked types.
func decodeView(obj []byte, v *view) error {
	if jsonv2.Unmarshal(obj, v, fastDecode) == nil {
		return nil
	}
	*v = view{}
	return json.Unmarshal(obj, v)
}

// typeError is the field error for a value of the wrong JSON type in obj.
func typeError(obj []byte, te *json.UnmarshalTypeError) *field.Error {
	p := field.NewPath("spec")
	if te.Field != "" {
		parts := strings.Split(te.Field, ".")
		p = field.NewPath(parts[0], parts[1:]...)
	}
	want := "a " + te.Type.Kind().String()
	switch te.Type.Kind() {
	case reflect.Int64, reflect.Int, reflect.Int32:
		want = "an integer"
	case reflect.Float64, reflect.Float32:
		want = "a number"
	case reflect.Bool:
		want = "true or false"
	case reflect.Slice:
		want = "a list"
	case reflect.Struct, reflect.Map:
		want = "an object"
	}
	return field.TypeInvalid(p, mistypedValue(obj, te), "must be "+want)
}

// mistypedValue is the value a type error is about, as written: the string,
// number or boolean that ends at te.Offset in obj (encoding/json's Value
// names only its JSON type: "string", "number 80.5"). An object or array,
// which may be large, is named by its JSON type, as the apiserver names it.
func mistypedValue(obj []byte, te *json.UnmarshalTypeError) any {
	end := int(te.Offset)
	if end < 1 || end > len(obj) {
		return te.Value
	}
	start := end - 1
	if obj[start] == '"' {
		// Back to the opening quote: the first one not escaped (preceded
		// by an even number of backslashes).
		for start--; start >= 0; start-- {
			if obj[start] != '"' {
				continue
			}
			n := 0
			for i := start - 1; i >= 0 && obj[i] == '\\'; i-- {
				n++
			}
			if n%2 == 0 {
				break
			}
		}
	} else {
		for start > 0 && strings.IndexByte("+-.0123456789eEaflrstu", obj[start-1]) >= 0 {
			start--
		}
	}
	if start < 0 {
		return te.Value
	}
	dec := json.NewDecoder(bytes.NewReader(obj[start:end]))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil || dec.More() {
		return te.Value
	}
	switch v.(type) {
	case string, bool, json.Number:
		return v
	}
	return te.Value
}

// ipv6ExclusionWarnings tells the user an IPv6 exclusion range changes
// nothing: the sidecar never intercepts IPv6, so that traffic already
// bypasses it. Admitted all the same, as FSM admits it.
func ipv6ExclusionWarnings(t *traffic, p *field.Path) []string {
	var w []string
	for i, s := range t.OutboundIPRangeExclusionList {
		if pfx, errs := rules.IPRange(p.Index(i), s); len(errs) == 0 && pfx.Addr().Is6() {
			w = append(w, fmt.Sprintf("%s: %q changes nothing: the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic is never intercepted and already bypasses it",
				p.Index(i), s))
		}
	}
	return w
}

// fsmInt16Warnings warns of a port FSM's controller cannot read: FSM v1.5.1
// types these as int16, so 32768-65535 (admitted: they are TCP ports, and
// our types hold them) makes the whole MeshConfig undecodable to it, and it
// keeps running after a switch. Not a denial: the reference's fix is to
// hold every port; the operator decides whether FSM's controller still
// reads this mesh.
func fsmInt16Warnings(s *spec, p *field.Path) []string {
	var w []string
	for _, f := range []struct {
		path *field.Path
		v    int64
	}{
		{p.Child("repoServer", "port"), s.RepoServer.Port},
		{p.Child("observability", "tracing", "port"), s.Observability.Tracing.Port},
		{p.Child("observability", "remoteLogging", "port"), s.Observability.RemoteLogging.Port},
	} {
		if f.v > math.MaxInt16 && f.v <= math.MaxUint16 {
			w = append(w, fmt.Sprintf("%s: %d is above 32767: FSM's controller reads this field as an int16 and cannot decode a MeshConfig holding it", f.path, f.v))
		}
	}
	return w
}

func deprecatedFields(s *spec) []string {
	var w []string
	sc := field.NewPath("spec", "sidecar")
	msg := func(p *field.Path) string {
		return fmt.Sprintf("%s is deprecated: %s/%s has no such field", p, Group, StorageVersion)
	}
	if s.Sidecar.SidecarClass != "" {
		w = append(w, msg(sc.Child("sidecarClass")))
	}
	if s.Sidecar.InitContainerImage != "" {
		w = append(w, msg(sc.Child("initContainerImage")))
	}
	if len(s.Sidecar.SidecarDrivers) > 0 {
		w = append(w, msg(sc.Child("sidecarDrivers")))
	}
	return w
}

func validateSpec(s *spec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, validateSidecar(&s.Sidecar, p.Child("sidecar"))...)
	errs = append(errs, rules.RepoServerAddr(p.Child("repoServer", "ipaddr"), s.RepoServer.IPAddr)...)
	errs = append(errs, check.OptionalPort(p.Child("repoServer", "port"), &s.RepoServer.Port)...)
	errs = append(errs, validateTraffic(&s.Traffic, p.Child("traffic"))...)
	errs = append(errs, validateWarmup(&s.Warmup, p.Child("warmup"))...)
	errs = append(errs, validateObservability(&s.Observability, p.Child("observability"))...)
	errs = append(errs, validateCertificate(&s.Certificate, p.Child("certificate"))...)
	errs = append(errs, validateIngress(&s.Ingress, p.Child("ingress"))...)
	errs = append(errs, rules.Enum(p.Child("gatewayAPI", "logLevel"), s.GatewayAPI.LogLevel, ControlPlaneLogLevels...)...)
	errs = append(errs, rules.Image(p.Child("serviceLB", "image"), s.ServiceLB.Image)...)
	errs = append(errs, rules.Enum(p.Child("flb", "upstreamMode"), s.FLB.UpstreamMode, FLBUpstreamModes...)...)
	errs = append(errs, validateEgressGateway(&s.EgressGateway, p.Child("egressGateway"))...)
	errs = append(errs, validateImage(&s.Image, p.Child("image"))...)
	errs = append(errs, rules.Image(p.Child("misc", "repoServerImage"), s.Misc.RepoServerImage)...)
	errs = append(errs, validateConnector(&s.Connector, p.Child("connector"))...)
	return errs
}

func validateSidecar(s *sidecar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	_, _, logLevelErrs := rules.SidecarLogLevel(p.Child("logLevel"), s.LogLevel)
	errs = append(errs, logLevelErrs...)
	errs = append(errs, rules.Image(p.Child("sidecarImage"), s.SidecarImage)...)
	errs = append(errs, validateLegacySidecar(s, p)...)
	errs = append(errs, check.Duration(p.Child("configResyncInterval"), s.ConfigResyncInterval)...)
	if s.MaxDataPlaneConnections < 0 {
		errs = append(errs, field.Invalid(p.Child("maxDataPlaneConnections"), s.MaxDataPlaneConnections, "should be greater than or equal to 0"))
	}
	minErrs := rules.Enum(p.Child("tlsMinProtocolVersion"), s.TLSMinProtocolVersion, TLSVersions...)
	maxErrs := rules.Enum(p.Child("tlsMaxProtocolVersion"), s.TLSMaxProtocolVersion, TLSVersions...)
	errs = append(errs, minErrs...)
	errs = append(errs, maxErrs...)
	if len(minErrs) == 0 && len(maxErrs) == 0 {
		lo, hi := slices.Index(TLSVersions, s.TLSMinProtocolVersion), slices.Index(TLSVersions, s.TLSMaxProtocolVersion)
		// TLS_AUTO (index 0) and "not set" (-1) leave the bound to the proxy.
		if lo > 0 && hi > 0 && lo > hi {
			errs = append(errs, field.Invalid(p.Child("tlsMinProtocolVersion"), s.TLSMinProtocolVersion,
				fmt.Sprintf("tlsMinProtocolVersion must be less than or equal to tlsMaxProtocolVersion (%s)", s.TLSMaxProtocolVersion)))
		}
	}
	errs = append(errs, check.NamesUniqueNonEmpty(p.Child("cipherSuites"), s.CipherSuites)...)
	errs = append(errs, check.NamesUniqueNonEmpty(p.Child("ecdhCurves"), s.ECDHCurves)...)
	errs = append(errs, rules.Enum(p.Child("localProxyMode"), s.LocalProxyMode, LocalProxyModes...)...)
	errs = append(errs, s.Resources.validate(p.Child("resources"))...)
	errs = append(errs, s.InitResources.validate(p.Child("initResources"))...)
	errs = append(errs, s.HealthcheckResources.validate(p.Child("healthcheckResources"))...)

	dns := p.Child("localDNSProxy")
	errs = append(errs, check.DNSUpstream(dns.Child("primaryUpstreamDNSServerIPAddr"), s.LocalDNSProxy.Primary)...)
	errs = append(errs, check.DNSUpstream(dns.Child("secondaryUpstreamDNSServerIPAddr"), s.LocalDNSProxy.Secondary)...)
	errs = append(errs, resolveAddrs(dns.Child("wildcard", "los"), s.LocalDNSProxy.Wildcard.LOs)...)
	errs = append(errs, resolveAddrs(dns.Child("wildcard", "ips"), s.LocalDNSProxy.Wildcard.IPs)...)
	for i, db := range s.LocalDNSProxy.DB {
		errs = append(errs, resolveAddrs(dns.Child("db").Index(i).Child("ips"), db.IPs)...)
	}
	for i, u := range s.XNetDNSProxy.Upstreams {
		up := p.Child("xnetDNSProxy", "upstreams").Index(i)
		errs = append(errs, check.IP(up.Child("ip"), u.IP)...)
		// 0 is what FSM's own install writes: FSM's sidecar then uses 53.
		errs = append(errs, check.OptionalPort(up.Child("port"), u.Port)...)
	}
	return errs
}

// validateLegacySidecar checks the sidecar fields v1alpha3 dropped, in a
// v1alpha1/v1alpha2 object or in the annotation that keeps them on a
// v1alpha3 one.
func validateLegacySidecar(s *sidecar, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Image(p.Child("initContainerImage"), s.InitContainerImage)...)
	for i := range s.SidecarDrivers {
		d := &s.SidecarDrivers[i]
		dp := p.Child("sidecarDrivers").Index(i)
		errs = append(errs, rules.Image(dp.Child("sidecarImage"), d.SidecarImage)...)
		errs = append(errs, rules.Image(dp.Child("initContainerImage"), d.InitContainerImage)...)
		errs = append(errs, rules.Port(dp.Child("proxyServerPort"), d.ProxyServerPort)...)
	}
	return errs
}

// resolveAddrs checks the answers of the DNS proxy's wildcard and db
// entries. As FSM v1.5.1 serves them (pkg/dns HandleWildcard, the repo's
// generatePipyWildcardIPRanges): an entry with an ipv6 and an empty ipv4
// answers AAAA only, and an IPv4-mapped ipv6 (::ffff:127.0.0.2) is what
// FSM itself writes for generateIPv6BasedOnIPv4, so both are admitted.
func resolveAddrs(p *field.Path, addrs []resolveAddr) field.ErrorList {
	var errs field.ErrorList
	for i, a := range addrs {
		ap := p.Index(i)
		switch {
		case a.IPv4 == "" && a.IPv6 == "":
			errs = append(errs, field.Required(ap.Child("ipv4"), "an IPv4 address such as 127.0.0.2, or an ipv6 for an entry that answers AAAA only"))
		case a.IPv4 == "":
		default:
			if ip, err := netip.ParseAddr(a.IPv4); err != nil || !ip.Is4() {
				errs = append(errs, field.Invalid(ap.Child("ipv4"), a.IPv4, "must be an IPv4 address such as 127.0.0.2"))
			}
		}
		if a.IPv6 != "" {
			// A zone is no part of an AAAA answer: FSM's net.ParseIP
			// refuses it and answers with an empty record.
			if ip, err := netip.ParseAddr(a.IPv6); err != nil || !ip.Is6() {
				errs = append(errs, field.Invalid(ap.Child("ipv6"), a.IPv6, "must be an IPv6 address such as fd00::2"))
			} else if ip.Zone() != "" {
				errs = append(errs, field.Invalid(ap.Child("ipv6"), a.IPv6, "must be an IPv6 address such as fd00::2, without a zone (%"+ip.Zone()+")"))
			}
		}
	}
	return errs
}

func validateTraffic(t *traffic, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("interceptionMode"), t.InterceptionMode, InterceptionModes...)...)
	errs = append(errs, rules.Enum(p.Child("serviceAccessMode"), t.ServiceAccessMode, ServiceAccessModes...)...)

	// The mesh intercepts IPv4 only: an IPv6 exclusion is accepted (a no-op,
	// see ipv6ExclusionWarnings), an IPv6 inclusion refused.
	exPath, inPath := p.Child("outboundIPRangeExclusionList"), p.Child("outboundIPRangeInclusionList")
	excluded, exErrs := rules.IPRanges(exPath, t.OutboundIPRangeExclusionList)
	errs = append(errs, exErrs...)
	for i, s := range t.OutboundIPRangeInclusionList {
		pfx, e := rules.InterceptedIPRange(inPath.Index(i), s)
		errs = append(errs, e...)
		if len(e) > 0 {
			continue
		}
		// An excluded range inside an included one is a deliberate carve-out;
		// an included range inside an excluded one can never be intercepted.
		for j, ex := range excluded {
			if ex.IsValid() && ex.Bits() <= pfx.Bits() && ex.Contains(pfx.Addr()) {
				errs = append(errs, field.Invalid(inPath.Index(i), s,
					fmt.Sprintf("overlaps %s (%q): exclusion wins, so this range is never intercepted", exPath.Index(j), t.OutboundIPRangeExclusionList[j])))
				break
			}
		}
	}
	errs = append(errs, rules.Ports(p.Child("outboundPortExclusionList"), t.OutboundPortExclusionList)...)
	errs = append(errs, rules.Ports(p.Child("inboundPortExclusionList"), t.InboundPortExclusionList)...)
	errs = append(errs, rules.InterfaceNames(p.Child("networkInterfaceExclusionList"), t.NetworkInterfaceExclusionList)...)

	ea := p.Child("inboundExternalAuthorization")
	if t.InboundExternalAuthorization.Enable {
		errs = append(errs, rules.Port(ea.Child("port"), t.InboundExternalAuthorization.Port)...)
	} else {
		errs = append(errs, check.OptionalPort(ea.Child("port"), &t.InboundExternalAuthorization.Port)...)
	}
	errs = append(errs, check.Duration(ea.Child("timeout"), t.InboundExternalAuthorization.Timeout)...)
	return errs
}

func validateWarmup(w *warmup, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, check.Duration(p.Child("duration"), w.Duration)...)
	var minErrs, maxErrs field.ErrorList
	if w.MinWeight != nil {
		minErrs = rules.Range(p.Child("minWeight"), *w.MinWeight, 0, 100)
	}
	if w.MaxWeight != nil {
		maxErrs = rules.Range(p.Child("maxWeight"), *w.MaxWeight, 0, 100)
	}
	errs = append(errs, minErrs...)
	errs = append(errs, maxErrs...)
	if w.MinWeight != nil && w.MaxWeight != nil && len(minErrs)+len(maxErrs) == 0 && *w.MinWeight > *w.MaxWeight {
		errs = append(errs, field.Invalid(p.Child("minWeight"), *w.MinWeight,
			fmt.Sprintf("minWeight must be less than or equal to maxWeight (%d)", *w.MaxWeight)))
	}
	if w.Aggression != nil && *w.Aggression < 1 {
		errs = append(errs, field.Invalid(p.Child("aggression"), *w.Aggression, "should be greater than or equal to 1"))
	}
	return errs
}

func validateObservability(o *observability, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("fsmLogLevel"), o.FSMLogLevel, ControlPlaneLogLevels...)...)
	errs = append(errs, validateCollector(&o.Tracing, p.Child("tracing"))...)
	errs = append(errs, validateCollector(&o.RemoteLogging, p.Child("remoteLogging"))...)
	if l := o.RemoteLogging.Level; l != nil {
		// FSM's controller, which keeps running after a switch, reads it
		// as a uint16: any other value makes the whole MeshConfig
		// undecodable to it (and beyond int32, to our converter).
		errs = append(errs, rules.Range(p.Child("remoteLogging", "level"), *l, 0, math.MaxUint16)...)
	}
	return errs
}

func validateCollector(c *collector, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if c.Enable {
		errs = append(errs, rules.Port(p.Child("port"), c.Port)...)
	} else {
		errs = append(errs, check.OptionalPort(p.Child("port"), &c.Port)...)
	}
	if c.SampledFraction.Set {
		errs = append(errs, check.Fraction(p.Child("sampledFraction"), c.SampledFraction.Text)...)
	}
	return errs
}

func validateCertificate(c *certificate, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, check.PositiveDuration(p.Child("serviceCertValidityDuration"), c.ServiceCertValidityDuration)...)
	if c.CertKeyBitSize != nil {
		errs = append(errs, rules.CertKeyBitSize(p.Child("certKeyBitSize"), *c.CertKeyBitSize)...)
	}
	if c.IngressGateway != nil {
		errs = append(errs, check.PositiveDuration(p.Child("ingressGateway", "validityDuration"), c.IngressGateway.ValidityDuration)...)
	}
	return errs
}

func validateIngress(in *ingress, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("type"), in.Type, IngressTypes...)...)
	errs = append(errs, rules.Enum(p.Child("logLevel"), in.LogLevel, ControlPlaneLogLevels...)...)
	ptrPort := func(pp *field.Path, v *int64) {
		if v != nil {
			errs = append(errs, rules.Port(pp, *v)...)
		}
	}
	if h := in.HTTP; h != nil {
		hp := p.Child("http")
		ptrPort(hp.Child("bind"), h.Bind)
		ptrPort(hp.Child("listen"), h.Listen)
		ptrPort(hp.Child("nodePort"), h.NodePort)
	}
	if t := in.TLS; t != nil {
		tp := p.Child("tls")
		ptrPort(tp.Child("bind"), t.Bind)
		ptrPort(tp.Child("listen"), t.Listen)
		ptrPort(tp.Child("nodePort"), t.NodePort)
		if t.SSLPassthrough != nil {
			ptrPort(tp.Child("sslPassthrough", "upstreamPort"), t.SSLPassthrough.UpstreamPort)
		}
	}
	return errs
}

func validateEgressGateway(g *egressGateway, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("logLevel"), g.LogLevel, ControlPlaneLogLevels...)...)
	errs = append(errs, rules.Enum(p.Child("mode"), g.Mode, EgressGatewayModes...)...)
	if g.Port != nil {
		errs = append(errs, rules.Port(p.Child("port"), *g.Port)...)
	}
	if g.AdminPort != nil {
		errs = append(errs, rules.Port(p.Child("adminPort"), *g.AdminPort)...)
	}
	if g.Replicas != nil {
		// The Go types hold replicas as int32; the schema has no maximum.
		errs = append(errs, rules.Range(p.Child("replicas"), *g.Replicas, 0, math.MaxInt32)...)
	}
	return errs
}

func validateImage(im *image, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("pullPolicy"), im.PullPolicy, PullPolicies...)...)
	registryOK := true
	if im.Registry != "" {
		if err := rules.ParseNormalizedNamed(im.Registry + "/image"); err != nil {
			registryOK = false
			errs = append(errs, field.Invalid(p.Child("registry"), im.Registry, "must be a registry and optional path such as flomesh or ghcr.io/flomesh-io"))
		}
	}
	tagOK := true
	if im.Tag != "" {
		if err := rules.ParseReference("image:" + im.Tag); err != nil {
			tagOK = false
			errs = append(errs, field.Invalid(p.Child("tag"), im.Tag, "must be an image tag such as v1.5.0 (letters, digits, '_', '.', '-'; at most 128 characters)"))
		}
	}
	// Each component image is registry/name plus the digest if pinned, else the tag.
	for _, k := range sortedKeys(im.Name) {
		ref := im.Name[k]
		if im.Registry != "" {
			ref = im.Registry + "/" + ref
		}
		if !registryOK {
			continue
		}
		d := im.Digest[k]
		switch {
		case d != "":
			if err := rules.ParseReference("image@" + d); err != nil {
				errs = append(errs, field.Invalid(p.Child("digest").Key(k), d, "must be a digest such as sha256:<64 hex digits>"))
				continue
			}
			ref += "@" + d
		case im.Tag != "" && tagOK:
			ref += ":" + im.Tag
		}
		if err := rules.ParseNormalizedNamed(ref); err != nil {
			errs = append(errs, field.Invalid(p.Child("name").Key(k), im.Name[k],
				fmt.Sprintf("must make a container image reference with spec.image.registry, got %q: %v", ref, err)))
		}
	}
	return errs
}

func validateConnector(c *connector, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	errs = append(errs, rules.Enum(p.Child("lb", "type"), c.LB.Type, LBTypes...)...)
	vg := p.Child("viaGateway")
	errs = append(errs, rules.Range(vg.Child("ingressHTTPPort"), c.ViaGateway.IngressHTTPPort, 0, rules.MaxPort)...)
	errs = append(errs, rules.Range(vg.Child("ingressGRPCPort"), c.ViaGateway.IngressGRPCPort, 0, rules.MaxPort)...)
	errs = append(errs, rules.Range(vg.Child("egressHTTPPort"), c.ViaGateway.EgressHTTPPort, 0, rules.MaxPort)...)
	errs = append(errs, rules.Range(vg.Child("egressGRPCPort"), c.ViaGateway.EgressGRPCPort, 0, rules.MaxPort)...)
	return errs
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ValidateIdentity enforces one MeshConfig per mesh namespace: in the mesh's
// namespace the only MeshConfig is the one the mesh reads, meshConfigName.
// MeshConfigs elsewhere may belong to other meshes and are left alone.
func ValidateIdentity(name, namespace, meshNamespace, meshConfigName string) field.ErrorList {
	if namespace != meshNamespace || name == meshConfigName {
		return nil
	}
	return field.ErrorList{field.Invalid(field.NewPath("metadata", "name"), name,
		fmt.Sprintf("the mesh in namespace %s reads only the MeshConfig named %q; one MeshConfig per mesh namespace", meshNamespace, meshConfigName))}
}
