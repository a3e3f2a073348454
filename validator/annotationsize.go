package validator

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// annotationSizeLimit is the apiserver's limit on an object's annotations in
// total (keys and values). It also checks the object a conversion webhook
// returns, so a stored MeshConfig whose conversion exceeds it fails every
// GET, LIST and WATCH in that version ("corrupt object").
const annotationSizeLimit = apivalidation.TotalAnnotationSizeLimitB

// A converted object's annotations are its own plus the re-encoding of part
// of its spec, all decoded from the request's object: encoding/json writes a
// string at most 6 times as long as it reads it (`<` becomes `\u003c`), an
// array item such as `{}` at most 4 times. AnnotationV1Alpha3Fields holds a
// value once, AnnotationV1Alpha3JSON at most twice (as stored and as
// converted back), and the fields a section leaves out (explicit nulls and
// zeros included) add at most a few KiB. Objects below the bound these give
// are admitted without converting them.
const (
	maxExpansion     = 18
	maxFixedOverhead = 32 << 10
)

// downConversionSizeErrors refuses a MeshConfig write whose stored v1alpha3
// object, converted to v1alpha1 or v1alpha2 by the converter's own code,
// carries more annotations than the apiserver accepts: the v1alpha3 data
// those versions cannot hold goes into lossless.AnnotationV1Alpha3Fields
// (and its exact JSON, where the old version would change it, into
// AnnotationV1Alpha3JSON), so a large v1alpha3-only field
// (sidecar.localDNSProxy.db, say) would break every read of MeshConfigs in
// the old versions (docs/design.md: no v1alpha3 write may). One error per
// version that would fail. For a large object these conversions are most
// of a write's cost (about a second per MB); it stops before each once ctx
// is done (the request's: the apiserver timed out or went away), with
// ctx's error.
func downConversionSizeErrors(ctx context.Context, version string, obj []byte) (field.ErrorList, error) {
	if len(obj)*maxExpansion+maxFixedOverhead <= annotationSizeLimit {
		return nil, nil // cannot reach the limit: spares every usual write two conversions
	}
	if rules.CostlyQuantity(obj) != nil {
		return nil, nil // refused by meshconfig.Validate, unparsed: the conversions would parse it, at length
	}
	hub, ok := storedHub(version, obj)
	if !ok {
		return nil, nil // undecodable: the other rules say why
	}
	var errs field.ErrorList
	for _, v := range []string{meshconfig.V1alpha1, meshconfig.V1alpha2} {
		if err := ctx.Err(); err != nil {
			return nil, context.Cause(ctx)
		}
		down := meshconfig.NewSpoke(v)
		if convert.FromHub(hub, newHub, down) != nil {
			continue // the annotation rules report a failing conversion
		}
		total := annotationsSize(down.GetAnnotations())
		if total <= annotationSizeLimit {
			continue
		}
		kept := down.GetAnnotations()[lossless.AnnotationV1Alpha3Fields]
		exact := down.GetAnnotations()[lossless.AnnotationV1Alpha3JSON]
		path, size := largestPart(kept)
		fldPath := field.NewPath("metadata", "annotations")
		if path != "" {
			fldPath = field.NewPath("spec", strings.Split(path, ".")...)
		}
		largest := ""
		if path != "" {
			largest = fmt.Sprintf("; its largest part is spec.%s, %d bytes", path, size)
		}
		exactNote := ""
		if exact != "" {
			exactNote = fmt.Sprintf(", and annotation %s the %d bytes of v1alpha3 JSON that converting back would not reproduce", lossless.AnnotationV1Alpha3JSON, len(exact))
		}
		errs = append(errs, field.Forbidden(fldPath, fmt.Sprintf(
			"read as %s/%s this MeshConfig would carry %d bytes of annotations, over the apiserver's limit of %d bytes in total, "+
				"so every GET and LIST of MeshConfigs in %s/%s would fail (annotation %s holds the %d bytes of v1alpha3 data %s cannot hold%s%s); "+
				"shrink the v1alpha3-only data (or the object's own annotations) by at least %d bytes",
			meshconfig.Group, v, total, annotationSizeLimit, meshconfig.Group, v,
			lossless.AnnotationV1Alpha3Fields, len(kept), v, largest, exactNote, total-annotationSizeLimit)))
	}
	return errs, nil
}

func newHub() conversion.Hub { return &v1alpha3.MeshConfig{} }

// storedHub decodes obj (of the served version) as the converter does and
// returns the JSON of the v1alpha3 object it is stored as.
func storedHub(version string, obj []byte) ([]byte, bool) {
	if version == meshconfig.V1alpha3 {
		return obj, kjson.UnmarshalCaseSensitivePreserveInts(obj, &v1alpha3.MeshConfig{}) == nil
	}
	src := meshconfig.NewSpoke(version)
	if src == nil || kjson.UnmarshalCaseSensitivePreserveInts(obj, src) != nil {
		return nil, false
	}
	hub, err := convert.ToHub(src, newHub())
	return hub, err == nil
}

// annotationsSize is the size the apiserver limits (apivalidation).
func annotationsSize(a map[string]string) int {
	n := 0
	for k, v := range a {
		n += len(k) + len(v)
	}
	return n
}

// largestPart follows the annotation's JSON from its top into the largest
// member while that member is most of its parent, and returns its path
// (such as sidecar.localDNSProxy.db) and encoded size: what to shrink.
func largestPart(annotation string) (string, int) {
	var v any
	if json.Unmarshal([]byte(annotation), &v) != nil {
		return "", 0
	}
	path, size := "", len(annotation)
	for {
		m, ok := v.(map[string]any)
		if !ok {
			return path, size
		}
		best, bestSize := "", 0
		for k, e := range m {
			b, _ := json.Marshal(e)
			if len(b) > bestSize || (len(b) == bestSize && k < best) {
				best, bestSize = k, len(b)
			}
		}
		if best == "" || (path != "" && bestSize*2 < size) {
			return path, size
		}
		if path != "" {
			path += "."
		}
		path, size, v = path+best, bestSize, m[best]
	}
}
