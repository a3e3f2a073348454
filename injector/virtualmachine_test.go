package injector

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// vmJSON is a VirtualMachine as the apiserver sends it, with metadata
// members (a JSON object's fields) merged in: nil values are sent as null.
func vmJSON(metadata map[string]any) []byte {
	md := map[string]any{"name": "vm-1", "namespace": "app"}
	for k, v := range metadata {
		md[k] = v
	}
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "machine.flomesh.io/v1alpha1", "kind": "VirtualMachine", "metadata": md,
		"spec": map[string]any{"machineIP": "10.0.0.5", "services": []any{map[string]any{"serviceName": "db", "port": 5432}}, "futureField": true},
	})
	return b
}

func TestDecideVirtualMachine(t *testing.T) {
	ns := func(name string, labels, ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann}}
	}
	monitored := map[string]string{fsmnames.MonitoredByLabel: "fsm"}
	vm := func(ann map[string]string) *VirtualMachine {
		return &VirtualMachine{Metadata: &metav1.ObjectMeta{Name: "vm-1", Annotations: ann}}
	}
	ann := func(v string) map[string]string { return map[string]string{SidecarInjectionAnnotation: v} }

	tests := []struct {
		name   string
		vm     *VirtualMachine
		ns     *corev1.Namespace
		inject bool
		skip   SkipReason
		err    string
	}{
		{name: "namespace enabled, VM silent", vm: vm(nil), ns: ns("app", monitored, ann("enabled")), inject: true},
		{name: "VM enabled, namespace silent", vm: vm(ann("enabled")), ns: ns("app", monitored, nil), inject: true},
		{name: "VM yes, case-insensitive", vm: vm(ann("YES")), ns: ns("app", monitored, nil), inject: true},
		{name: "VM enabled beats namespace disabled", vm: vm(ann("true")), ns: ns("app", monitored, ann("disabled")), inject: true},
		{name: "VM disabled beats namespace enabled", vm: vm(ann("disabled")), ns: ns("app", monitored, ann("enabled")), skip: SkipDisabled},
		{name: "namespace disabled, VM silent", vm: vm(nil), ns: ns("app", monitored, ann("no")), skip: SkipDisabled},
		{name: "no annotation anywhere", vm: vm(nil), ns: ns("app", monitored, nil), skip: SkipNotEnabled},
		{name: "VM without metadata: the namespace decides", vm: &VirtualMachine{}, ns: ns("app", monitored, ann("enabled")), inject: true},
		{name: "VM value on", vm: vm(ann("on")), ns: ns("app", monitored, ann("enabled")),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": on`},
		{name: "namespace value bad, VM silent", vm: vm(nil), ns: ns("app", monitored, ann("maybe")),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": maybe (on the namespace)`},
		{name: "namespace not monitored", vm: vm(ann("enabled")), ns: ns("app", nil, ann("enabled")), skip: SkipNotMonitored},
		{name: "namespace of another mesh", vm: vm(ann("enabled")), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "other"}, ann("enabled")), skip: SkipNotMonitored},
		{name: "namespace ignored", vm: vm(ann("enabled")), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.IgnoreLabel: ""}, nil), skip: SkipIgnored},
		{name: "fsm namespace", vm: vm(ann("enabled")), ns: ns("fsm-system", monitored, nil), skip: SkipFSMNamespace},
		{name: "kube-system", vm: vm(ann("enabled")), ns: ns("kube-system", monitored, nil), skip: SkipSystemNamespace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := DecideVirtualMachine(DecideVirtualMachineInput{VM: tc.vm, Namespace: tc.ns, MeshName: "fsm", FSMNamespace: "fsm-system"})
			if tc.err != "" {
				if d.Err == nil || d.Err.Error() != tc.err {
					t.Fatalf("err %v, want %q", d.Err, tc.err)
				}
				return
			}
			if d.Err != nil || d.Inject != tc.inject || d.Skip != tc.skip || d.Reinject || d.ExistingUUID != "" {
				t.Errorf("decision %+v, want inject=%v skip=%q", d, tc.inject, tc.skip)
			}
		})
	}
}

// TestVirtualMachinePatch applies the patch to the object as sent: the label
// is set (over an existing one, as FSM does) and nothing else changes.
func TestVirtualMachinePatch(t *testing.T) {
	const id = "00000000-0000-4000-8000-000000000001"
	spec := `"spec":{"machineIP":"10.0.0.5","futureField":{"a":[1,2]}}`
	head := `{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine",`
	tests := []struct {
		name     string
		metadata string // the object's metadata member, "" for none
		want     string // the patched object's metadata member
	}{
		{"labels absent", `"metadata":{"name":"vm-1"}`, `"metadata":{"name":"vm-1","labels":{"fsm-proxy-uuid":"` + id + `"}}`},
		{"labels null", `"metadata":{"name":"vm-1","labels":null}`, `"metadata":{"name":"vm-1","labels":{"fsm-proxy-uuid":"` + id + `"}}`},
		{"labels empty", `"metadata":{"name":"vm-1","labels":{}}`, `"metadata":{"name":"vm-1","labels":{"fsm-proxy-uuid":"` + id + `"}}`},
		{"other labels kept", `"metadata":{"name":"vm-1","labels":{"app":"db","a/b~c":"x"}}`,
			`"metadata":{"name":"vm-1","labels":{"app":"db","a/b~c":"x","fsm-proxy-uuid":"` + id + `"}}`},
		{"existing uuid overwritten", `"metadata":{"name":"vm-1","labels":{"fsm-proxy-uuid":"old","app":"db"}}`,
			`"metadata":{"name":"vm-1","labels":{"fsm-proxy-uuid":"` + id + `","app":"db"}}`},
		{"unknown metadata members kept", `"metadata":{"name":"vm-1","futureMeta":{"x":1},"annotations":{"flomesh.io/sidecar-injection":"enabled"}}`,
			`"metadata":{"name":"vm-1","futureMeta":{"x":1},"annotations":{"flomesh.io/sidecar-injection":"enabled"},"labels":{"fsm-proxy-uuid":"` + id + `"}}`},
		{"metadata absent", ``, `"metadata":{"labels":{"fsm-proxy-uuid":"` + id + `"}}`},
		{"metadata null", `"metadata":null`, `"metadata":{"labels":{"fsm-proxy-uuid":"` + id + `"}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := head + spec + "}"
			if tc.metadata != "" {
				raw = head + tc.metadata + "," + spec + "}"
			}
			vm, err := DecodeVirtualMachine([]byte(raw))
			if err != nil {
				t.Fatal(err)
			}
			ops := VirtualMachinePatch(vm, id)
			if len(ops) != 1 || ops[0].Operation != "add" {
				t.Fatalf("ops %v, want one add", ops)
			}
			b, _ := json.Marshal(ops)
			patch, err := jsonpatchapply.DecodePatch(b)
			if err != nil {
				t.Fatal(err)
			}
			out, err := patch.Apply([]byte(raw))
			if err != nil {
				t.Fatalf("patch %s does not apply to %s: %v", b, raw, err)
			}
			if want := head + tc.want + "," + spec + "}"; !jsonpatchapply.Equal(out, []byte(want)) {
				t.Errorf("patched\n %s\nwant\n %s", out, want)
			}
		})
	}
}

func TestDecodeVirtualMachine(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		err  string // "" decodes
	}{
		{"a VirtualMachine", string(vmJSON(nil)), ""},
		{"a pod", `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"}}`, `object has apiVersion "v1" and kind "Pod", want "machine.flomesh.io/v1alpha1" and "VirtualMachine"`},
		{"another version", `{"apiVersion":"machine.flomesh.io/v1","kind":"VirtualMachine"}`, `object has apiVersion "machine.flomesh.io/v1"`},
		{"no type", `{"metadata":{"name":"vm-1"}}`, `object has apiVersion "" and kind ""`},
		{"null", `null`, `object has apiVersion "" and kind ""`},
		{"not an object", `[1]`, "cannot unmarshal array"},
		// Case-sensitive, as the apiserver: "Metadata" is not metadata, and
		// a patch under /metadata would not apply.
		{"Kind in another case", `{"apiVersion":"machine.flomesh.io/v1alpha1","Kind":"VirtualMachine"}`, `kind ""`},
		{"labels not a map", `{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine","metadata":{"labels":1}}`, "cannot unmarshal number"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			vm, err := DecodeVirtualMachine([]byte(tc.raw))
			if tc.err == "" {
				if err != nil || vm.Name() != "vm-1" {
					t.Fatalf("vm %+v, err %v", vm, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err %v, want one containing %q", err, tc.err)
			}
		})
	}
	vm, err := DecodeVirtualMachine([]byte(`{"apiVersion":"machine.flomesh.io/v1alpha1","kind":"VirtualMachine","Metadata":{"name":"x"}}`))
	if err != nil || vm.Metadata != nil {
		t.Errorf("member Metadata read as metadata: %+v, %v", vm, err)
	}
}

// vmReview is an AdmissionReview for a VirtualMachine create in namespace app.
func vmReview(t *testing.T, mutate func(*admissionv1.AdmissionRequest)) []byte {
	t.Helper()
	return reviewBody(t, func(r *admissionv1.AdmissionRequest) {
		r.Kind = VirtualMachineGVK
		r.Resource = metav1.GroupVersionResource{Group: VirtualMachineGroup, Version: VirtualMachineVersion, Resource: VirtualMachineResource}
		r.Object.Raw = vmJSON(nil)
		if mutate != nil {
			mutate(r)
		}
	})
}

// TestHandlerVirtualMachine drives the served handler with VirtualMachine
// creates as FSM's webhook configuration sends them.
func TestHandlerVirtualMachine(t *testing.T) {
	silent := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "silent", Labels: map[string]string{fsmnames.MonitoredByLabel: "fsm"}}}
	const id = "00000000-0000-4000-8000-000000000001" // seqUUID's first
	withUUID := func(labels map[string]any) map[string]any {
		out := map[string]any{ProxyUUIDLabel: id}
		for k, v := range labels {
			if k != ProxyUUIDLabel {
				out[k] = v
			}
		}
		return out
	}
	tests := []struct {
		name    string
		body    []byte
		allowed bool
		labels  map[string]any // the patched object's labels; nil: not patched
		code    int32
		message string
		events  []string // notes of the Warning events
	}{
		{name: "namespace enabled: labelled", body: vmReview(t, nil), allowed: true, labels: withUUID(nil)},
		{name: "existing labels kept, existing uuid replaced", body: vmReview(t, func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = vmJSON(map[string]any{"labels": map[string]any{"app": "db", ProxyUUIDLabel: "copied"}})
		}), allowed: true, labels: withUUID(map[string]any{"app": "db"})},
		{name: "dry run: labelled", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.DryRun = ptrBool(true) }), allowed: true, labels: withUUID(nil)},
		{name: "VM disabled", body: vmReview(t, func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = vmJSON(map[string]any{"annotations": map[string]any{SidecarInjectionAnnotation: "disabled"}})
		}), allowed: true},
		{name: "VM enabled, namespace silent", body: vmReview(t, func(r *admissionv1.AdmissionRequest) {
			r.Namespace = "silent"
			r.Object.Raw = vmJSON(map[string]any{"namespace": "silent", "labels": nil, "annotations": map[string]any{SidecarInjectionAnnotation: "enabled"}})
		}), allowed: true, labels: withUUID(nil)},
		{name: "namespace silent, VM silent", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "silent" }), allowed: true},
		{name: "namespace not monitored", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "other" }), allowed: true},
		{name: "update is not touched", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }), allowed: true},
		{name: "namespace from the object", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Namespace = "" }), allowed: true, labels: withUUID(nil)},
		{name: "bad annotation denied with an event on the namespace", body: vmReview(t, func(r *admissionv1.AdmissionRequest) {
			r.Object.Raw = vmJSON(map[string]any{"annotations": map[string]any{SidecarInjectionAnnotation: "on"}})
		}), code: http.StatusBadRequest, message: `invalid annotation value for key "flomesh.io/sidecar-injection": on`,
			events: []string{`VirtualMachine vm-1 refused by the sidecar injector: invalid annotation value for key "flomesh.io/sidecar-injection": on`}},
		{name: "a pod sent as a VirtualMachine", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw, _ = json.Marshal(simplePod(nil)) }),
			code: http.StatusBadRequest, message: `decoding VirtualMachine: object has apiVersion "" and kind ""`},
		{name: "missing object", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }),
			code: http.StatusBadRequest, message: "admission request has no VirtualMachine object"},
		{name: "labels not a map", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Object.Raw = vmJSON(map[string]any{"labels": []any{"x"}}) }),
			code: http.StatusBadRequest, message: "decoding VirtualMachine: "},
		{name: "no namespace", body: vmReview(t, func(r *admissionv1.AdmissionRequest) {
			r.Namespace = ""
			r.Object.Raw = vmJSON(map[string]any{"namespace": nil})
		}), code: http.StatusBadRequest, message: "admission request names no namespace"},
		{name: "another version", body: vmReview(t, func(r *admissionv1.AdmissionRequest) { r.Kind.Version = "v1beta1" }),
			code: http.StatusBadRequest, message: `expected a v1 Pod or a machine.flomesh.io/v1alpha1 VirtualMachine, got "machine.flomesh.io/v1beta1, Kind=VirtualMachine"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil, silent)
			_, resp := f.post(t, tc.body, "application/json")
			if resp.UID != "uid-1" {
				t.Errorf("uid %q not echoed", resp.UID)
			}
			if resp.Allowed != tc.allowed || (len(resp.Patch) > 0) != (tc.labels != nil) {
				t.Fatalf("allowed=%v patch=%s, want allowed=%v labels %v; result %+v", resp.Allowed, resp.Patch, tc.allowed, tc.labels, resp.Result)
			}
			if !tc.allowed && (resp.Result == nil || resp.Result.Code != tc.code || !strings.Contains(resp.Result.Message, tc.message)) {
				t.Errorf("result %+v, want code %d message containing %q", resp.Result, tc.code, tc.message)
			}
			if len(f.secrets) != 0 {
				t.Errorf("%d Secrets created for a VirtualMachine", len(f.secrets))
			}
			var notes []string
			for _, e := range f.recorder.events {
				notes = append(notes, e.note)
				if ref, ok := e.regarding.(*corev1.ObjectReference); !ok || ref.Kind != "Namespace" || ref.Name != "app" {
					t.Errorf("event regarding %+v, want the namespace app", e.regarding)
				}
			}
			if !reflect.DeepEqual(notes, tc.events) {
				t.Errorf("events %q, want %q", notes, tc.events)
			}
			if tc.labels == nil {
				return
			}
			var req admissionv1.AdmissionReview
			if err := json.Unmarshal(tc.body, &req); err != nil {
				t.Fatal(err)
			}
			patch, err := jsonpatchapply.DecodePatch(resp.Patch)
			if err != nil {
				t.Fatal(err)
			}
			out, err := patch.Apply(req.Request.Object.Raw)
			if err != nil {
				t.Fatalf("patch %s does not apply: %v", resp.Patch, err)
			}
			var got, sent map[string]any
			_ = json.Unmarshal(out, &got)
			_ = json.Unmarshal(req.Request.Object.Raw, &sent)
			md := got["metadata"].(map[string]any)
			if !reflect.DeepEqual(md["labels"], tc.labels) {
				t.Errorf("labels %v, want %v", md["labels"], tc.labels)
			}
			// Only the labels changed.
			delete(md, "labels")
			delete(sent["metadata"].(map[string]any), "labels")
			if !reflect.DeepEqual(got, sent) {
				t.Errorf("patched object differs beyond its labels:\n got %v\nsent %v", got, sent)
			}
		})
	}
}
