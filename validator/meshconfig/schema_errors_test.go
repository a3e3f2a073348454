package meshconfig

import (
	"encoding/json"
	"errors"
	"testing"

	openapierrors "k8s.io/kube-openapi/pkg/validation/errors"
	openapivalidate "k8s.io/kube-openapi/pkg/validation/validate"
)

// TestStoredSchemaErrorsReadAsAPIServer: the stored v1alpha3 object is
// judged as the apiserver reads it back (nulls dropped at any depth, then
// the schema's defaults), and a failed bound names the field and value once,
// with kube-openapi's own path prefix left out of the detail.
func TestStoredSchemaErrorsReadAsAPIServer(t *testing.T) {
	upstream := map[string]any{"name": "a", "ip": "1.1.1.1"}
	for _, tc := range []struct {
		name string
		sets map[string]any
		del  string // a key of spec.traffic to drop
		want []string
	}{{
		name: "a null in a list item reads as absent",
		sets: map[string]any{"sidecar.xnetDNSProxy.upstreams": []any{map[string]any{"name": "a", "ip": "1.1.1.1", "port": nil}}},
	}, {
		name: "a list item without its defaulted required field",
		sets: map[string]any{"sidecar.xnetDNSProxy.upstreams": []any{upstream}},
	}, {
		name: "a required field with a default, absent",
		del:  "serviceAccessMode",
	}, {
		name: "a value below the schema's minimum",
		sets: map[string]any{"ingress.http.bind": 0},
		want: []string{"spec.ingress.http.bind: Invalid value: 0: in body should be greater than or equal to 1"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			hub := edit(t, presetWithout(t), tc.sets)
			if tc.del != "" {
				hub = dropTrafficKey(t, hub, tc.del)
			}
			errs, err := storedSchemaErrors(hub)
			if err != nil {
				t.Fatal(err)
			}
			if got := messages(errs); !equal(got, tc.want) {
				t.Errorf("errors %q, want %q", got, tc.want)
			}
		})
	}
}

func dropTrafficKey(t *testing.T, hub []byte, key string) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(hub, &m); err != nil {
		t.Fatal(err)
	}
	delete(m["spec"].(map[string]any)["traffic"].(map[string]any), key)
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSchemaErrorsFromKubeOpenAPI: kube-openapi's errors become field
// errors as the apiserver writes them: an anyOf failure (a message, no
// field) is placed at the path it quotes, or at spec when it quotes none
// under spec; it is left out beside the field errors of its branches; the
// same error twice is reported once.
func TestSchemaErrorsFromKubeOpenAPI(t *testing.T) {
	anyOf := func(path string) error {
		return openapierrors.New(openapierrors.CompositeErrorCode, openapivalidate.MustValidateAtLeastOneSchemaError, path)
	}
	required := openapierrors.Required("spec.traffic.interceptionMode", "body")
	for _, tc := range []struct {
		name string
		errs []error
		want []string
	}{{
		name: "an anyOf failure alone",
		errs: []error{anyOf("spec.sidecar.resources.limits.cpu")},
		want: []string{`spec.sidecar.resources.limits.cpu: Invalid value: "": must validate at least one schema (anyOf)`},
	}, {
		name: "an anyOf failure quoting no path under spec",
		errs: []error{anyOf("metadata.name")},
		want: []string{`spec: Invalid value: "": "metadata.name" must validate at least one schema (anyOf)`},
	}, {
		name: "a message quoting nothing",
		errs: []error{errors.New("something failed")},
		want: []string{`spec: Invalid value: "": something failed`},
	}, {
		name: "an anyOf failure beside a field error",
		errs: []error{&openapierrors.CompositeError{Errors: []error{anyOf("spec.traffic"), required}}},
		want: []string{"spec.traffic.interceptionMode: Required value"},
	}, {
		name: "the same error twice",
		errs: []error{required, openapierrors.Required("spec.traffic.interceptionMode", "body")},
		want: []string{"spec.traffic.interceptionMode: Required value"},
	}, {
		name: "the same anyOf failure twice",
		errs: []error{anyOf("spec.traffic"), anyOf("spec.traffic")},
		want: []string{`spec.traffic: Invalid value: "": must validate at least one schema (anyOf)`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			if got := messages(schemaErrors(map[string]any{}, tc.errs)); !equal(got, tc.want) {
				t.Errorf("errors %q, want %q", got, tc.want)
			}
		})
	}
}
