package meshconfig

import (
	"reflect"
	"strings"
	"testing"
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
