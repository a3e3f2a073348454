package meshconfig

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// The conversion annotations carry data of another version that the
// converter writes into the object it produces. The view only sees the
// request's own version, so what they carry is checked here, with the
// converter's own code (apis/config), against the rules of the version the
// data ends up in.
var (
	hubFieldsPath    = field.NewPath("metadata", "annotations").Key(lossless.AnnotationV1Alpha3Fields)
	legacyFieldsPath = field.NewPath("metadata", "annotations").Key(lossless.AnnotationV1Alpha2Fields)
	hubJSONPath      = field.NewPath("metadata", "annotations").Key(lossless.AnnotationV1Alpha3JSON)
)

// SpokeObject is a v1alpha1 or v1alpha2 MeshConfig.
type SpokeObject interface {
	conversion.Convertible
	metav1.Object
}

// NewSpoke is an empty MeshConfig of version V1alpha1 or V1alpha2, else nil.
func NewSpoke(version string) SpokeObject {
	switch version {
	case V1alpha1:
		return &v1alpha1.MeshConfig{}
	case V1alpha2:
		return &v1alpha2.MeshConfig{}
	}
	return nil
}

// hubFieldProblems validates a v1alpha1/v1alpha2 write as the v1alpha3
// object it is stored as: the converter restores AnnotationV1Alpha3Fields
// into it, so without this a write through an old version could store
// anything the v1alpha3 rules refuse, or warn of, with neither a denial nor a
// warning. Only the errors and warnings the annotation brings are returned
// (the rest of the object is the view's, already checked); one whose value
// the annotation holds names it at its place in the annotation.
//
// The same holds for AnnotationV1Alpha3JSON, which puts exact v1alpha3 JSON
// back where the object still holds what it was read as.
func hubFieldProblems(version string, obj []byte, annotations map[string]string) (field.ErrorList, []string) {
	src := NewSpoke(version)
	// Decoded as the converter decodes it. An object that does not decode
	// never reaches an admission webhook (the apiserver converts it to the
	// storage version first); the view's rules report why.
	if src == nil || kjson.UnmarshalCaseSensitivePreserveInts(obj, src) != nil {
		return nil, nil
	}
	annotation := annotations[lossless.AnnotationV1Alpha3Fields]
	fieldsOnly := src.DeepCopyObject().(SpokeObject)
	changes, err := lossless.TakeChanges(fieldsOnly)
	if err != nil {
		return field.ErrorList{field.Invalid(hubJSONPath, annotations[lossless.AnnotationV1Alpha3JSON],
			"must be the JSON the converter writes (a list of {\"path\":[\"spec\",...],\"was\":...,\"got\":...}), or remove it: "+err.Error())}, nil
	}
	typed, err := hubJSON(fieldsOnly)
	if err != nil {
		// A quantity the CRD's pattern admits and the parser refuses
		// (1e1.5): named by its place in the annotation and its value,
		// which the parser's message leaves out.
		if e := rules.UnparsableQuantity(obj); e != nil && e.Field == hubFieldsPath.String() {
			return field.ErrorList{e}, nil
		}
		return field.ErrorList{field.Invalid(hubFieldsPath, annotation,
			"must be the JSON the converter writes (v1alpha3 fields at their spec paths, such as {\"ingress\":{\"type\":\"NodePort\"}}): "+err.Error())}, nil
	}
	with := typed
	if len(changes) > 0 {
		with, err = hubJSON(src)
		if err == nil {
			err = showsTheSame(version, typed, with)
		}
		if err != nil {
			return field.ErrorList{field.Invalid(hubJSONPath, annotations[lossless.AnnotationV1Alpha3JSON],
				"must be what the converter wrote when this object was read, which only keeps how the stored v1alpha3 object spells what "+
					Group+"/"+version+" shows (an absent section, an explicit zero, a quantity's form), or remove it: "+err.Error())}, nil
		}
	}
	bare := src.DeepCopyObject().(SpokeObject)
	ann := bare.GetAnnotations()
	delete(ann, lossless.AnnotationV1Alpha3Fields)
	delete(ann, lossless.AnnotationV1Alpha3JSON)
	bare.SetAnnotations(ann)
	without, err := hubJSON(bare)
	if err != nil {
		return nil, nil // not the annotation's doing
	}
	base, _ := validateView(V1alpha3, without)
	stored, _ := validateView(V1alpha3, with)
	var kept any
	_ = json.Unmarshal([]byte(annotation), &kept) // hubJSON decoded it already
	// rename places a problem with field path f: at its place in the
	// annotation when the annotation holds the value, else at f in the
	// stored object. It returns the path and the note to append.
	rename := func(f string) (string, string) {
		if rest, _ := strings.CutPrefix(f, "spec."); holds(kept, rest) {
			return hubFieldsPath.String() + "." + rest, fmt.Sprintf(" (stored as %s in v1alpha3)", f)
		}
		return f, fmt.Sprintf(" (in the v1alpha3 object this is stored as, with %s applied)", appliedAnnotations(annotations))
	}
	var errs field.ErrorList
	for _, e := range stored.Errors {
		if containsError(base.Errors, e) {
			continue // the object's own fields (or the defaults conversion fills in)
		}
		e := *e
		var note string
		e.Field, note = rename(e.Field)
		e.Detail += note
		errs = append(errs, &e)
	}
	var warnings []string
	for _, w := range stored.Warnings {
		// Those of the object's own fields (or the defaults) the view
		// already warned of, once.
		if slices.Contains(base.Warnings, w) {
			continue
		}
		// A v1alpha3 object's warnings are all "<field path>: <detail>"
		// (validateView); a field the annotation holds is named by its
		// place in it, as errors are.
		if f, detail, ok := strings.Cut(w, ": "); ok {
			f, note := rename(f)
			w = f + ": " + detail + note
		}
		if !slices.Contains(warnings, w) {
			warnings = append(warnings, w)
		}
	}
	return errs, warnings
}

// showsTheSame reports, as an error, where the v1alpha3 object exact reads
// differently in version than typed does. AnnotationV1Alpha3JSON written by
// the converter changes only what the old version cannot show, so
// converting typed (the object without it) and exact (with it) back to
// version must give the same object, as far as version shows it (the
// v1alpha3-only data both carry in AnnotationV1Alpha3Fields is checked by
// the v1alpha3 rules and schema instead). Both are read as the apiserver serves
// them, with the v1alpha3 schema's defaults: convert.ToHub defaults the
// object it puts values back into, and a default the other lacks (a
// section absent in v1alpha3, edited through the old version) is no
// difference.
func showsTheSame(version string, typed, exact []byte) error {
	a, b := NewSpoke(version), NewSpoke(version)
	for _, c := range []struct {
		hub  []byte
		down SpokeObject
	}{{typed, a}, {exact, b}} {
		var obj map[string]any
		if err := json.Unmarshal(c.hub, &obj); err != nil {
			return err
		}
		v1alpha3.SpecDefaults.Apply(obj["spec"])
		defaulted, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		var hub v1alpha3.MeshConfig
		if err := kjson.UnmarshalCaseSensitivePreserveInts(defaulted, &hub); err != nil {
			return err
		}
		if err := c.down.ConvertFrom(&hub); err != nil {
			return err
		}
		// Data the old version cannot show rides in this annotation,
		// spelled as the hub object holds it (defaults written out or
		// not); the v1alpha3 rules and schema judge that data.
		ann := c.down.GetAnnotations()
		delete(ann, lossless.AnnotationV1Alpha3Fields)
		c.down.SetAnnotations(ann)
	}
	if apiequality.Semantic.DeepEqual(a, b) {
		return nil
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	where := "its annotations"
	if d, err := lossless.Diff(aj, bj, nil); err == nil && len(d) > 0 {
		where = strings.Join(d[0].Path, ".")
	}
	return fmt.Errorf("it changes what %s shows, at %s", version, where)
}

// hubJSON converts a spoke to the v1alpha3 object the converter stores.
func hubJSON(src SpokeObject) ([]byte, error) {
	hub := &v1alpha3.MeshConfig{TypeMeta: metav1.TypeMeta{APIVersion: Group + "/" + V1alpha3, Kind: Kind}}
	return convert.ToHub(src, hub)
}

// appliedAnnotations names the conversion annotations of an old version's
// object that the converter applies, for messages.
func appliedAnnotations(annotations map[string]string) string {
	var names []string
	for _, k := range []string{lossless.AnnotationV1Alpha3Fields, lossless.AnnotationV1Alpha3JSON} {
		if _, ok := annotations[k]; ok {
			names = append(names, k)
		}
	}
	if len(names) == 1 {
		return "annotation " + names[0]
	}
	return "annotations " + strings.Join(names, " and ")
}

// legacyFieldErrors checks AnnotationV1Alpha2Fields on a v1alpha3 write:
// the sidecar fields v1alpha3 dropped, which reads in v1alpha1/v1alpha2
// show. It must convert (a value the old Go types cannot hold would fail
// every read of MeshConfigs in those versions), and what it carries must
// pass the rules a write through those versions passes.
func legacyFieldErrors(obj []byte, annotation string) field.ErrorList {
	var hub v1alpha3.MeshConfig
	if kjson.UnmarshalCaseSensitivePreserveInts(obj, &hub) != nil {
		return nil // as in hubFieldProblems
	}
	for _, version := range []string{V1alpha1, V1alpha2} {
		if err := NewSpoke(version).ConvertFrom(hub.DeepCopy()); err != nil {
			return field.ErrorList{field.Invalid(legacyFieldsPath, annotation,
				fmt.Sprintf("must be the JSON the converter writes, such as {\"sidecar\":{\"sidecarClass\":\"pipy\"}}, or reads in %s/%s fail: %v", Group, version, err))}
		}
	}
	// Read as the converter reads it (spoke.Legacy, with encoding/json): only
	// the keys it restores. Decoding into the view's wider sidecar type would
	// let a key the converter ignores (resources, say) fail the decode and
	// hide these. The converter decoded it above, so this decodes too (ports
	// are wider here).
	var legacy struct {
		Sidecar struct {
			SidecarClass       string          `json:"sidecarClass"`
			InitContainerImage string          `json:"initContainerImage"`
			SidecarDrivers     []sidecarDriver `json:"sidecarDrivers"`
		} `json:"sidecar"`
	}
	_ = json.Unmarshal([]byte(annotation), &legacy)
	l := legacy.Sidecar
	return validateLegacySidecar(&sidecar{SidecarClass: l.SidecarClass, InitContainerImage: l.InitContainerImage, SidecarDrivers: l.SidecarDrivers},
		legacyFieldsPath.Child("sidecar"))
}

func containsError(list field.ErrorList, e *field.Error) bool {
	for _, o := range list {
		if sameError(o, e) {
			return true
		}
	}
	return false
}

// holds reports whether the JSON value v has the field path p (as
// field.Path prints it, without "spec."), or all of it but a missing last
// object key (a required field the annotation leaves out). Keys match as
// encoding/json matches them: exactly, else case-insensitively.
func holds(v any, p string) bool {
	segs, ok := splitPath(p)
	if !ok {
		return false
	}
	for i, s := range segs {
		switch n := v.(type) {
		case map[string]any:
			next, found := n[s]
			if !found {
				for k, kv := range n {
					if strings.EqualFold(k, s) {
						next, found = kv, true
						break
					}
				}
			}
			if !found {
				return i == len(segs)-1
			}
			v = next
		case []any:
			idx, err := strconv.Atoi(s)
			if err != nil || idx < 0 || idx >= len(n) {
				return false
			}
			v = n[idx]
		default:
			return false
		}
	}
	return true
}

// splitPath splits "a.b[0].c[key.with.dots]" into a, b, 0, c, key.with.dots.
func splitPath(p string) ([]string, bool) {
	var segs []string
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, false
			}
			segs = append(segs, p[1:end])
			p = p[end+1:]
		default:
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			segs = append(segs, p[:end])
			p = p[end:]
		}
	}
	return segs, len(segs) > 0
}
