package meshconfig

import (
	"encoding/json"
	"testing"

	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// storeAsAPIServer is what the apiserver keeps (and serves) for a write
// through version: the converter's v1alpha3 JSON with nulls dropped and the
// schema's defaults applied.
func storeAsAPIServer(t *testing.T, version string, obj []byte) []byte {
	t.Helper()
	src := NewSpoke(version)
	if err := kjson.UnmarshalCaseSensitivePreserveInts(obj, src); err != nil {
		t.Fatal(err)
	}
	hub, err := hubJSON(src)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(hub, &m); err != nil {
		t.Fatal(err)
	}
	dropNulls(m)
	v1alpha3.SpecDefaults.Apply(m["spec"])
	out, _ := json.Marshal(m)
	return out
}

// TestSparseWriteThenUnchangedRewrite: a sparse write through an old
// version is admitted with the schema warning; reading the stored object
// back through either old version and writing it unchanged must then be
// admitted without a new schema warning (nothing new is broken).
func TestSparseWriteThenUnchangedRewrite(t *testing.T) {
	for _, tc := range []struct{ version, obj string }{
		{V1alpha2, `{"apiVersion":"config.flomesh.io/v1alpha2","kind":"MeshConfig","metadata":{"name":"m","namespace":"ns"},"spec":{"sidecar":{"logLevel":"debug"}}}`},
		{V1alpha1, `{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig","metadata":{"name":"m","namespace":"ns"},"spec":{"sidecar":{"logLevel":"debug"}}}`},
		{V1alpha1, `{"apiVersion":"config.flomesh.io/v1alpha1","kind":"MeshConfig","metadata":{"name":"m","namespace":"ns"},"spec":{"traffic":{"enableEgress":true,"inboundPortExclusionList":[],"outboundIPRangeExclusionList":[],"outboundPortExclusionList":[]}}}`},
	} {
		first := Validate(tc.version, []byte(tc.obj))
		if len(first.Errors) != 0 {
			t.Fatalf("setup: %s create denied: %q", tc.version, messages(first.Errors))
		}
		stored := storeAsAPIServer(t, tc.version, []byte(tc.obj))
		for _, readVersion := range []string{V1alpha1, V1alpha2} {
			read := readAs(t, readVersion, stored)
			r := ValidateUpdate(readVersion, read, read)
			if len(r.Errors) != 0 || schemaWarning(r.Warnings) != "" {
				t.Errorf("%s create %s, read as %s and written back unchanged: errors %q, warning %q",
					tc.version, tc.obj, readVersion, messages(r.Errors), schemaWarning(r.Warnings))
			}
		}
	}
}
