package validator

import (
	"context"
	"encoding/json"
	"fmt"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/flomesh-io/fsm-webhooks/apis/config/convert"
	"github.com/flomesh-io/fsm-webhooks/validator/internal/ratchet"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// withDNSTable returns the preset MeshConfig (v1alpha3) with a static DNS
// table of n entries in spec.sidecar.localDNSProxy.db, a field only v1alpha3
// has: about 75 bytes an entry, so 3500 make a ~270 KB object, well within
// the apiserver's request and etcd's object limits.
func withDNSTable(t testing.TB, n int) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(presetJSON(t), &m); err != nil {
		t.Fatal(err)
	}
	sc := m["spec"].(map[string]any)["sidecar"].(map[string]any)
	db := make([]any, 0, n)
	for i := range n {
		db = append(db, map[string]any{
			"dn":  fmt.Sprintf("svc-%05d.payments.example.internal", i),
			"ips": []any{map[string]any{"ipv4": fmt.Sprintf("10.%d.%d.%d", i/65536, (i/256)%256, i%256)}},
		})
	}
	ldp, _ := sc["localDNSProxy"].(map[string]any)
	if ldp == nil {
		ldp = map[string]any{"enable": true, "primaryUpstreamDNSServerIPAddr": "10.96.0.10", "wildcard": map[string]any{"enable": false}}
		sc["localDNSProxy"] = ldp
	}
	ldp["db"] = db
	obj, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestDownConversionAnnotationSize: the apiserver checks the annotations of
// every object a conversion webhook returns against its 256 KiB total
// (apiextensions-apiserver restoreObjectMeta), so a v1alpha3 MeshConfig
// whose v1alpha3-only data does not fit in the converted object's
// conversion.flomesh.io/v1alpha3-fields annotation would fail every GET and
// LIST of MeshConfigs in v1alpha1/v1alpha2. The write is refused instead,
// saying by how much and what to shrink; the rules of the view admit it.
func TestDownConversionAnnotationSize(t *testing.T) {
	big := withDNSTable(t, 3500)
	if r := meshconfig.Validate(meshconfig.V1alpha3, big); len(r.Errors) != 0 {
		t.Fatalf("setup: the MeshConfig rules refuse the object: %v", r.Errors)
	}
	hub, ok := storedHub(meshconfig.V1alpha3, big)
	if !ok {
		t.Fatal("setup: the object does not decode")
	}
	for _, v := range []string{meshconfig.V1alpha1, meshconfig.V1alpha2} {
		down := meshconfig.NewSpoke(v)
		if err := convert.FromHub(hub, newHub, down); err != nil {
			t.Fatal(err)
		}
		// What the apiserver runs on the converter's answer.
		if len(apivalidation.ValidateAnnotations(down.GetAnnotations(), field.NewPath("metadata", "annotations"))) == 0 {
			t.Fatalf("setup: the %s object's annotations fit the apiserver's limit; make the table larger", v)
		}
	}

	errs := mustSizeErrors(t, meshconfig.V1alpha3, big)
	if len(errs) != 2 {
		t.Fatalf("errors %v, want one for each of v1alpha1 and v1alpha2", errs)
	}
	for i, v := range []string{meshconfig.V1alpha1, meshconfig.V1alpha2} {
		msg := errs[i].Error()
		t.Log(msg)
		for _, want := range []string{
			"spec.sidecar.localDNSProxy.db: Forbidden: read as config.flomesh.io/" + v + " this MeshConfig would carry ",
			"over the apiserver's limit of " + strconv.Itoa(apivalidation.TotalAnnotationSizeLimitB) + " bytes in total",
			"every GET and LIST of MeshConfigs in config.flomesh.io/" + v + " would fail",
			"conversion.flomesh.io/v1alpha3-fields holds the ",
			"its largest part is spec.sidecar.localDNSProxy.db, ",
			"shrink the v1alpha3-only data",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: %q lacks %q", v, msg, want)
			}
		}
	}

	// The limit is the apiserver's, not a guess: just below it passes.
	for n := 3500; n > 0; n -= 100 {
		small := withDNSTable(t, n)
		if len(mustSizeErrors(t, meshconfig.V1alpha3, small)) > 0 {
			continue
		}
		hub, _ := storedHub(meshconfig.V1alpha3, small)
		for _, v := range []string{meshconfig.V1alpha1, meshconfig.V1alpha2} {
			down := meshconfig.NewSpoke(v)
			if err := convert.FromHub(hub, newHub, down); err != nil {
				t.Fatal(err)
			}
			if errs := apivalidation.ValidateAnnotations(down.GetAnnotations(), field.NewPath("metadata", "annotations")); len(errs) != 0 {
				t.Errorf("%d entries admitted, but the apiserver refuses the %s object: %v", n, v, errs)
			}
		}
		if n < 3000 {
			t.Errorf("only %d entries admitted; the limit should admit about 3300", n)
		}
		break
	}
	if len(mustSizeErrors(t, meshconfig.V1alpha3, presetJSON(t))) != 0 {
		t.Error("the preset is refused")
	}
}

// TestDownConversionAnnotationSizeHandler: the served handler denies a
// CREATE (422 with the cause) and ratchets an UPDATE of an object already
// over the limit (a warning), so it can still be edited and shrunk.
func TestDownConversionAnnotationSizeHandler(t *testing.T) {
	big, bigger, preset := withDNSTable(t, 3500), withDNSTable(t, 3600), presetJSON(t)
	h := NewHandler(Options{FSMNamespace: "fsm-system"})
	send := func(op admissionv1.Operation, obj, old []byte) admission.Response {
		return h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
			UID: "u", Kind: metav1.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.V1alpha3, Kind: meshconfig.Kind},
			Operation: op, Namespace: "fsm-system", Name: "fsm-mesh-config",
			Object: runtime.RawExtension{Raw: obj}, OldObject: runtime.RawExtension{Raw: old},
		}})
	}
	const denial = "spec.sidecar.localDNSProxy.db: Forbidden: read as config.flomesh.io/v1alpha1 this MeshConfig would carry"

	resp := send(admissionv1.Create, big, nil)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != 422 || !strings.Contains(resp.Result.Message, denial) {
		t.Errorf("CREATE: %+v, want a 422 denial with %q", resp.Result, denial)
	}
	resp = send(admissionv1.Update, big, preset)
	if resp.Allowed {
		t.Error("UPDATE growing a MeshConfig over the limit was admitted")
	}
	resp = send(admissionv1.Update, bigger, big)
	if !resp.Allowed || !slices.ContainsFunc(resp.Warnings, func(w string) bool {
		return strings.HasPrefix(w, denial) && strings.HasSuffix(w, ratchet.Suffix)
	}) {
		t.Errorf("UPDATE of a MeshConfig already over the limit: allowed %v, warnings %q; want allowed with the problem as a warning", resp.Allowed, resp.Warnings)
	}
	if resp = send(admissionv1.Update, preset, big); !resp.Allowed || len(resp.Warnings) != 0 {
		t.Errorf("UPDATE shrinking it: allowed %v, warnings %q", resp.Allowed, resp.Warnings)
	}
}

// TestCostlyQuantityHandler: a quantity whose parsing costs seconds
// (1e-9999999: about 1.5 s each time, one more exponent digit about a
// minute) is denied through the served handler, naming the field and the
// value, without being parsed; in an object large enough for the
// down-conversion size check, which converts it twice more, too.
func TestCostlyQuantityHandler(t *testing.T) {
	h := NewHandler(Options{FSMNamespace: "fsm-system"})
	for _, tc := range []struct {
		name string
		obj  []byte
	}{{"preset", presetJSON(t)}, {"large", withDNSTable(t, 1000)}} {
		t.Run(tc.name, func(t *testing.T) {
			var m map[string]any
			if err := json.Unmarshal(tc.obj, &m); err != nil {
				t.Fatal(err)
			}
			m["spec"].(map[string]any)["sidecar"].(map[string]any)["resources"] = map[string]any{"limits": map[string]any{"cpu": "1e-9999999"}}
			obj, err := json.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var before, after goruntime.MemStats
			goruntime.ReadMemStats(&before)
			resp := h.Handle(context.Background(), admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
				UID: "u", Kind: metav1.GroupVersionKind{Group: meshconfig.Group, Version: meshconfig.V1alpha3, Kind: meshconfig.Kind},
				Operation: admissionv1.Create, Namespace: "fsm-system", Name: "fsm-mesh-config", Object: runtime.RawExtension{Raw: obj},
			}})
			goruntime.ReadMemStats(&after)
			// The work done, in bytes allocated: each parse of the value
			// allocates about 35 MB (its time grows with them).
			if n := after.TotalAlloc - before.TotalAlloc; n > 8<<20 {
				t.Errorf("the request allocated %d MB, want at most 8 MB: the quantity was parsed", n>>20)
			}
			const want = `spec.sidecar.resources.limits[cpu]: Invalid value: "1e-9999999": must be a quantity such as 500m, 2 or 64Mi (at most 64 characters, an exponent between -999 and 999)`
			if resp.Allowed || resp.Result == nil || resp.Result.Code != 422 || !strings.Contains(resp.Result.Message, want) {
				t.Errorf("CREATE: allowed %v %+v, want a 422 denial with %q", resp.Allowed, resp.Result, want)
			}
		})
	}
}

func mustSizeErrors(t *testing.T, version string, obj []byte) field.ErrorList {
	t.Helper()
	errs, err := downConversionSizeErrors(context.Background(), version, obj)
	if err != nil {
		t.Fatal(err)
	}
	return errs
}
