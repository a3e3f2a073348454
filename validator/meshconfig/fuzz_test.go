package meshconfig

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	jsonv2 "github.com/go-json-experiment/json"
)

// Seeds live in testdata/fuzz/FuzzValidateMeshConfigSpec; plain `go test`
// runs them. This target sits here, not in package validator, so a fuzz build
// instruments only this package's small dependency set.

// FuzzValidateMeshConfigSpec validates arbitrary specs in every version.
// Invariants: no panic, deterministic, every error names a field under spec
// (or apiVersion), and an UPDATE that changes nothing is never denied
// (ratcheting keeps stored objects editable).
func FuzzValidateMeshConfigSpec(f *testing.F) {
	f.Add("v1alpha3", []byte(`{"sidecar":{"logLevel":"error"}}`))
	f.Add("v1alpha1", []byte(`{"observability":{"tracing":{"sampledFraction":0.5,"port":40000}}}`))
	f.Add("v1alpha2", []byte(`{"traffic":{"outboundIPRangeExclusionList":["10.0.0.0/8"],"outboundIPRangeInclusionList":["10.1.0.0/16"]}}`))
	f.Add("v1alpha3", []byte(`{"image":{"registry":"flomesh","tag":"v1","name":{"a":"b"},"digest":{"a":"sha256:x"}}}`))
	f.Fuzz(func(t *testing.T, version string, spec []byte) {
		obj := append(append([]byte(`{"spec":`), spec...), '}')
		r1 := Validate(version, obj)
		r2 := Validate(version, obj)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("not deterministic:\n%v\n%v", r1, r2)
		}
		for _, e := range r1.Errors {
			if !strings.HasPrefix(e.Field, "spec") && e.Field != "apiVersion" {
				t.Fatalf("error outside spec: %v", e)
			}
			if e.Error() == "" {
				t.Fatal("empty error message")
			}
		}
		if u := ValidateUpdate(version, obj, obj); len(u.Errors) != 0 {
			t.Fatalf("unchanged update denied: %v", u.Errors)
		}
	})
}

// FuzzDecodeViewParity: whenever the fast decoder accepts an object, it must
// read exactly what encoding/json reads, so the rules see the same view.
func FuzzDecodeViewParity(f *testing.F) {
	f.Add([]byte(`{"spec":{"sidecar":{"logLevel":"error","SidecarImage":"a"}}}`))
	f.Add([]byte(`{"spec":{"traffic":{"inboundPortExclusionList":[80,"x"]}}}`))
	f.Add([]byte(`{"spec":{"sidecar":{"logLevel":"a","logLevel":"b"}}}`))
	f.Add([]byte(`{"spec":{"observability":{"tracing":{"sampledFraction":1e-1}}}}`))
	f.Add([]byte(`{"metadata":{"name":"\xff"},"spec":null}`))
	f.Fuzz(func(t *testing.T, obj []byte) {
		var fast, slow view
		if jsonv2.Unmarshal(obj, &fast, fastDecode) != nil {
			return
		}
		if err := json.Unmarshal(obj, &slow); err != nil {
			t.Fatalf("fast decoder accepted what encoding/json refuses (%v): %q", err, obj)
		}
		if !reflect.DeepEqual(fast, slow) {
			t.Fatalf("decoders disagree on %q:\nfast %+v\nslow %+v", obj, fast, slow)
		}
	})
}

// FuzzValidateConversionAnnotations feeds arbitrary conversion annotations
// to objects of every version. Invariants: no panic, deterministic, and an
// UPDATE that changes nothing is never denied.
func FuzzValidateConversionAnnotations(f *testing.F) {
	f.Add("v1alpha1", "conversion.flomesh.io/v1alpha3-fields", `{"traffic":{"outboundIPRangeInclusionList":["fd00::/8"]}}`)
	f.Add("v1alpha2", "conversion.flomesh.io/v1alpha3-fields", `{"image":{"pullPolicy":"Sometimes"},"repoServer":{"port":70000}}`)
	f.Add("v1alpha3", "conversion.flomesh.io/v1alpha2-fields", `{"sidecar":{"sidecarDrivers":[{"proxyServerPort":0}]}}`)
	f.Add("v1alpha1", "conversion.flomesh.io/v1alpha3-fields", `{"ingress":`)
	f.Fuzz(func(t *testing.T, version, key, value string) {
		obj, err := json.Marshal(map[string]any{
			"apiVersion": Group + "/" + version, "kind": Kind,
			"metadata": map[string]any{"name": "m", "namespace": "ns", "annotations": map[string]string{key: value}},
			"spec":     map[string]any{"sidecar": map[string]any{"logLevel": "error"}},
		})
		if err != nil {
			return
		}
		r1, r2 := Validate(version, obj), Validate(version, obj)
		if !reflect.DeepEqual(r1, r2) {
			t.Fatalf("not deterministic:\n%v\n%v", r1, r2)
		}
		if u := ValidateUpdate(version, obj, obj); len(u.Errors) != 0 {
			t.Fatalf("unchanged UPDATE denied: %v", u.Errors)
		}
	})
}
