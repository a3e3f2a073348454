package convert

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/internal/spoke"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// fractionPaths are where v1alpha1 holds sampledFraction as a number and
// v1alpha3 as a string, under spec.
var fractionPaths = [][]string{
	{"observability", "tracing", "sampledFraction"},
	{"observability", "remoteLogging", "sampledFraction"},
}

// restoreRelabelled returns hubJSON, a hub object as stored, as the hub
// object it stands for. While the CRD's conversion strategy is None (FSM as
// shipped, or this converter's rollback) the apiserver stores a write
// through v1alpha1/v1alpha2 relabelled as v1alpha3, unconverted: the old
// version's spec read through the v1alpha3 schema, with the annotations only
// old-version objects carry (lossless.AnnotationV1Alpha3Fields,
// AnnotationV1Alpha3JSON), and for v1alpha1 a sampledFraction number where
// v1alpha3 has a string. Such an object is converted up here as ToHub
// converts the old version's object, so that it neither fails every read in
// the old versions nor loses what its annotations carry.
//
// Which old version wrote it is not recorded, so it is read as v1alpha2,
// which shows everything v1alpha1 shows at the same paths: a v1alpha1
// sampledFraction number first becomes the string v1alpha1's ConvertTo
// writes (spoke.FractionToHub, with the string the annotation kept), and
// what the v1alpha1 annotation holds that v1alpha2 shows (TLS, DNS proxy,
// traffic lists) is put at its path in the spec (a value replaces, an
// object is merged into, null removes). The v1alpha2 conversion then
// restores the rest of the annotation with the hub defaults, and applies
// AnnotationV1Alpha3JSON. Any other object is returned as it is, an
// annotation it carries included (ReadAsRelabelled: a spec holding a
// hub-only section is a v1alpha3 object; FromHub then drops the stale
// annotations from the old version's view).
func restoreRelabelled(hubJSON []byte, newHub func() conversion.Hub) ([]byte, error) {
	p, err := probeStored(hubJSON)
	if err != nil || !p.relabelled(hubJSON) {
		return hubJSON, nil // on err, decoding it as the hub says what is wrong
	}
	fields, hasFields := p.Metadata.Annotations[lossless.AnnotationV1Alpha3Fields]

	tree, err := lossless.DecodeJSON(hubJSON)
	if err != nil {
		return nil, fmt.Errorf("decoding the hub object: %w", err)
	}
	obj, ok := tree.(map[string]any)
	if !ok {
		return nil, errors.New("decoding the hub object: not a JSON object")
	}
	spec, _ := obj["spec"].(map[string]any)
	if spec == nil {
		spec = map[string]any{}
		obj["spec"] = spec
	}
	kept := map[string]any{}
	if hasFields {
		v, err := lossless.DecodeJSON([]byte(fields))
		if err != nil {
			return nil, fmt.Errorf("annotation %s is not valid: %w", lossless.AnnotationV1Alpha3Fields, err)
		}
		if kept, ok = v.(map[string]any); !ok {
			return nil, fmt.Errorf("annotation %s is not valid: not a JSON object", lossless.AnnotationV1Alpha3Fields)
		}
	}
	for _, path := range fractionPaths {
		if err := restoreFraction(spec, kept, path); err != nil {
			return nil, err
		}
	}
	if hasFields {
		merge(spec, runtime.DeepCopyJSON(kept))
		// The annotation stays for the v1alpha2 conversion, without the
		// sampledFraction strings (v1alpha1's, applied above).
		rest, err := json.Marshal(kept)
		if err != nil {
			return nil, fmt.Errorf("encoding annotation %s: %w", lossless.AnnotationV1Alpha3Fields, err)
		}
		obj["metadata"].(map[string]any)["annotations"].(map[string]any)[lossless.AnnotationV1Alpha3Fields] = string(rest)
	}
	obj["apiVersion"] = v1alpha2.GroupVersion.String()
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("encoding the object: %w", err)
	}
	old := &v1alpha2.MeshConfig{}
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, old); err != nil {
		return nil, fmt.Errorf("decoding it as %s: %w", v1alpha2.GroupVersion, err)
	}
	return ToHub(old, newHub())
}

// storedProbe is what decides whether a stored hub object is an old
// version's write stored relabelled.
type storedProbe struct {
	Metadata struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		Observability struct {
			Tracing struct {
				SampledFraction json.RawMessage `json:"sampledFraction"`
			} `json:"tracing"`
			RemoteLogging struct {
				SampledFraction json.RawMessage `json:"sampledFraction"`
			} `json:"remoteLogging"`
		} `json:"observability"`
	} `json:"spec"`
}

func probeStored(hubJSON []byte) (storedProbe, error) {
	var p storedProbe
	err := kjson.UnmarshalCaseSensitivePreserveInts(hubJSON, &p)
	return p, err
}

// relabelled reports whether the stored object p was probed from
// (hubJSON) is an old version's write stored relabelled: a sampledFraction
// number (v1alpha1's; the hub's is a string), or an old version's
// annotation on a spec without any hub-only section.
func (p storedProbe) relabelled(hubJSON []byte) bool {
	obs := p.Spec.Observability
	if isNumber(obs.Tracing.SampledFraction) || isNumber(obs.RemoteLogging.SampledFraction) {
		return true
	}
	_, hasFields := p.Metadata.Annotations[lossless.AnnotationV1Alpha3Fields]
	_, hasExact := p.Metadata.Annotations[lossless.AnnotationV1Alpha3JSON]
	return (hasFields || hasExact) && !holdsHubOnlySection(hubJSON)
}

// ReadAsRelabelled reports whether FromHub reads hubJSON, a hub object as
// stored, as an old version's write stored relabelled while conversion was
// off, restoring the old-version annotations it carries. On any other
// object (one that holds spec.image, misc, connector or another hub-only
// section) those annotations are stale and ignored.
func ReadAsRelabelled(hubJSON []byte) bool {
	p, err := probeStored(hubJSON)
	return err == nil && p.relabelled(hubJSON)
}

// hubOnlySections are the spec keys only the hub version has (image, misc,
// connector, warmup, ingress, ...).
var hubOnlySections = func() map[string]bool {
	old := map[string]bool{}
	for _, k := range jsonKeys(reflect.TypeFor[v1alpha2.MeshConfigSpec]()) {
		old[k] = true
	}
	out := map[string]bool{}
	for _, k := range jsonKeys(reflect.TypeFor[v1alpha3.MeshConfigSpec]()) {
		if !old[k] {
			out[k] = true
		}
	}
	return out
}()

// jsonKeys are the JSON names of the fields of the struct type t.
func jsonKeys(t reflect.Type) []string {
	var out []string
	for f := range t.Fields() {
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			out = append(out, name)
		}
	}
	return out
}

// holdsHubOnlySection reports whether hubJSON's spec holds a section only
// the hub version has. Such an object is not an old version's write stored
// relabelled, whatever annotations it carries: the apiserver prunes a write
// by its own version's schema, which has none of them, while a v1alpha3
// write must hold spec.image, misc and connector (required) and the
// converter writes them on every way up. A stale old-version annotation on
// it (a converter from before AnnotationV1Alpha3JSON existed stored that
// one as it stores any annotation it does not know) is ignored: taken for
// a relabelled write, the object would be decoded as v1alpha2 and every
// old-version read would show the defaults instead of its image registry,
// warmup, ingress, ..., and a write back would store them.
func holdsHubOnlySection(hubJSON []byte) bool {
	var probe struct {
		Spec map[string]json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(hubJSON, &probe) != nil {
		return false
	}
	for k := range probe.Spec {
		if hubOnlySections[k] {
			return true
		}
	}
	return false
}

// restoreFraction sets the sampledFraction at path of spec to the v1alpha3
// string of the v1alpha1 number there (or, with none, the string kept
// alone), taking the string kept (the annotation's, at the same path) out of
// kept. A string in spec stays: it was not written through v1alpha1.
func restoreFraction(spec, kept map[string]any, path []string) error {
	var raw *string
	if parent, ok := lossless.LookupObject(kept, path[:len(path)-1]); ok {
		if s, ok := parent[path[len(path)-1]].(string); ok {
			raw = &s
		}
		delete(parent, path[len(path)-1])
	}
	parent, _ := lossless.LookupObject(spec, path[:len(path)-1])
	var num *float64
	switch v := parent[path[len(path)-1]].(type) {
	case json.Number:
		f, ok := spoke.ParseFraction(v.String())
		if !ok {
			return fmt.Errorf("spec.%s.%s.%s: %s is not a number v1alpha1 holds", path[0], path[1], path[2], v)
		}
		num = &f
	case nil:
	default:
		return nil
	}
	s := spoke.FractionToHub(num, raw)
	switch {
	case s != nil:
		if parent == nil {
			parent = ensure(spec, path[:len(path)-1])
		}
		parent[path[len(path)-1]] = *s
	case parent != nil:
		delete(parent, path[len(path)-1])
	}
	return nil
}

// merge puts what kept holds into dst at the same path: an object is merged
// into dst's object there, null removes the key (a nil pointer, which the
// hub's JSON leaves out), any other value replaces dst's.
func merge(dst, kept map[string]any) {
	for k, v := range kept {
		switch v := v.(type) {
		case nil:
			delete(dst, k)
		case map[string]any:
			if d, ok := dst[k].(map[string]any); ok {
				merge(d, v)
				continue
			}
			d := map[string]any{}
			merge(d, v)
			dst[k] = d
		default:
			dst[k] = v
		}
	}
}

func ensure(o map[string]any, path []string) map[string]any {
	for _, k := range path {
		next, ok := o[k].(map[string]any)
		if !ok {
			next = map[string]any{}
			o[k] = next
		}
		o = next
	}
	return o
}

// isNumber reports whether raw is a JSON number.
func isNumber(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}
