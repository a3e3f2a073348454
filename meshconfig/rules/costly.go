package rules

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// CostlyQuantity finds a quantity in raw (a MeshConfig of any version) that
// CheckQuantityCost refuses: a value of a limits or requests map
// anywhere in the object, or any number-like string in the JSON of a
// conversion annotation (conversionAnnotationPrefix: they carry resource
// requirements, or single values put back at a path). Other annotations are
// never decoded as a MeshConfig, and an unrelated tool's long number there
// must not fail the object's writes and conversions. Decoding the object as a typed
// MeshConfig, or applying those annotations, parses every such value with
// resource.ParseQuantity, whose cost grows without bound with the value's
// exponent, so this is checked first. The error names the first one found
// (in key order) and its value. nil when there is none or raw is not JSON
// (the typed decoding reports that).
func CostlyQuantity(raw []byte) *field.Error {
	// Decoding the whole object cost the converter a third more per
	// object; a byte scan rules out nearly every real one first.
	if !mayHoldCostlyQuantity(raw) {
		return nil
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return quantityIn(obj, costlyCheck, true)
}

// costlyCheck is the detail for a quantity CheckQuantityCost refuses.
func costlyCheck(s string) string {
	if CheckQuantityCost(s) != nil {
		return QuantityDetail
	}
	return ""
}

// UnparsableQuantity finds a quantity in raw (a MeshConfig of any version)
// that resource.ParseQuantity refuses although the CRD's pattern admits it
// (1e1.5: the pattern allows a fractional exponent, the parser does not):
// a value of a limits or requests map anywhere in the object, or in the
// JSON of a conversion annotation. The typed decoding of such an object
// fails with the parser's message alone; this names the field and the value.
// Only for an object whose decoding failed: it decodes the whole object.
// nil when there is none, a costly one is found first (CostlyQuantity), or
// raw is not JSON.
func UnparsableQuantity(raw []byte) *field.Error {
	if CostlyQuantity(raw) != nil {
		return nil // never parsed
	}
	var obj map[string]any
	if json.Unmarshal(raw, &obj) != nil {
		return nil
	}
	return quantityIn(obj, func(s string) string {
		if _, err := resource.ParseQuantity(s); err != nil {
			return "must be a quantity such as 500m, 2 or 64Mi: " + err.Error()
		}
		return ""
	}, false)
}

// quantityIn is the first quantity of obj, a MeshConfig decoded as JSON,
// for which check returns a detail (in key order): in a limits or requests
// map, then in a conversion annotation's data (there any number-like string
// too when anyNumber).
func quantityIn(obj map[string]any, check func(string) string, anyNumber bool) *field.Error {
	if e := costlyIn(obj, nil, false, check); e != nil {
		return e
	}
	meta, _ := obj["metadata"].(map[string]any)
	annotations, _ := meta["annotations"].(map[string]any)
	p := field.NewPath("metadata", "annotations")
	for _, k := range sortedKeys(annotations) {
		if !strings.HasPrefix(k, conversionAnnotationPrefix) {
			continue
		}
		s, _ := annotations[k].(string)
		if t := strings.TrimSpace(s); !strings.HasPrefix(t, "{") && !strings.HasPrefix(t, "[") {
			continue
		}
		var data any
		if json.Unmarshal([]byte(s), &data) != nil {
			continue // the annotation rules say why
		}
		if e := costlyIn(data, nil, anyNumber, check); e != nil {
			// Named as the annotation's data, by its path inside it.
			return field.Invalid(p.Key(k), e.BadValue, e.Field+": "+e.Detail)
		}
	}
	return nil
}

// mayHoldCostlyQuantity is false only when raw cannot hold a value whose
// parsing is costly: no run of more than MaxQuantityLength bytes a quantity
// is written with, no e or E followed by more digits than
// MaxQuantityExponent has, and no \u escape (which could spell either in
// other bytes). A value over the length bound made of other bytes is no
// quantity, which resource.ParseQuantity finds at once.
func mayHoldCostlyQuantity(raw []byte) bool {
	expDigits := len(strconv.Itoa(MaxQuantityExponent))
	run := 0
	for i, c := range raw {
		if isQuantityByte(c) {
			if run++; run > MaxQuantityLength {
				return true
			}
		} else {
			run = 0
		}
		switch {
		case c == '\\' && i+1 < len(raw) && raw[i+1] == 'u':
			return true
		case c == 'e' || c == 'E':
			j := i + 1
			if j < len(raw) && (raw[j] == '+' || raw[j] == '-') {
				j++
			}
			k := j
			for k < len(raw) && raw[k] >= '0' && raw[k] <= '9' {
				k++
			}
			if k-j > expDigits {
				return true
			}
		}
	}
	return false
}

// conversionAnnotationPrefix starts the name of every annotation the
// converter writes and decodes (apis/config/lossless).
const conversionAnnotationPrefix = "conversion.flomesh.io/"

// costlyIn is quantityIn for the JSON value v at p. anyNumber checks
// every number-like string, not only those of limits and requests.
func costlyIn(v any, p *field.Path, anyNumber bool, check func(string) string) *field.Error {
	switch v := v.(type) {
	case map[string]any:
		for _, k := range sortedKeys(v) {
			kp := field.NewPath(k)
			if p != nil {
				kp = p.Child(k)
			}
			if list, ok := v[k].(map[string]any); ok && (k == "limits" || k == "requests") {
				for _, name := range sortedKeys(list) {
					if s, ok := list[name].(string); ok {
						if d := check(s); d != "" {
							return field.Invalid(kp.Key(name), s, d)
						}
					}
				}
			}
			if e := costlyIn(v[k], kp, anyNumber, check); e != nil {
				return e
			}
		}
	case []any:
		for i, e := range v {
			if e := costlyIn(e, p.Index(i), anyNumber, check); e != nil {
				return e
			}
		}
	case string:
		if anyNumber && looksLikeQuantity(v) {
			if d := check(v); d != "" {
				return field.Invalid(p, v, d)
			}
		}
	}
	return nil
}

// isQuantityByte reports whether c can be part of a quantity's text.
func isQuantityByte(c byte) bool {
	return c < 0x80 && strings.IndexByte(quantityBytes, c) >= 0
}

// quantityBytes are the bytes a quantity is written with.
const quantityBytes = "0123456789.+-eEinumkKMGTP"

// looksLikeQuantity reports whether s has only the characters of a
// quantity, and a digit.
func looksLikeQuantity(s string) bool {
	return strings.ContainsAny(s, "0123456789") && strings.Trim(s, quantityBytes) == ""
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
