package injector_test

import (
	"context"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"github.com/google/uuid"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// testVirtualMachines: with FSM's VirtualMachine CRD installed
// (testdata/crds) and the injector's registered VirtualMachine rule, the
// apiserver sends VirtualMachine creates to the injector; one in a monitored
// namespace is stored with a fresh fsm-proxy-uuid label and its spec as
// sent, one annotated disabled or in an unmonitored namespace untouched, and
// no Secret is written.
func (e *e2e) testVirtualMachines(t *testing.T, servingCA *certstest.CA) {
	ctx := context.Background()
	ca := certstest.MustNew(t, certstest.Options{Algorithm: certs.ECDSAP256})
	h, err := injector.NewHandler(injector.Options{
		Client: e.cl, Namespaces: e.cl, Issuer: ca, MeshName: meshName, FSMNamespace: fsmNamespace, Logger: testr.New(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	url, bundle := serveWebhook(ctx, t, servingCA, fsmnames.InjectorPath, reviewhttp.NewAdmission(h))
	// The registration serve installs, its VirtualMachine rule only: the
	// suite's configuration already sends pods to the suite's injector.
	reg := injector.Registration(meshName, fsmNamespace).Mutating
	reg.Name = "fsm-webhook-" + meshName + "-vms"
	wh := &reg.Webhooks[0]
	wh.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: bundle}
	var vmRules []admissionregistrationv1.RuleWithOperations
	for _, r := range wh.Rules {
		if len(r.APIGroups) == 1 && r.APIGroups[0] == injector.VirtualMachineGroup {
			vmRules = append(vmRules, r)
		}
	}
	if len(vmRules) != 1 {
		t.Fatalf("registration rules %+v: want one for %s", wh.Rules, injector.VirtualMachineResource)
	}
	wh.Rules = vmRules
	createForTest(ctx, t, e.cl, reg)

	meshed := e.namespace(t, ctx, "vms", true)
	outside := e.namespace(t, ctx, "vms-outside", false)
	vm := func(name, ns string, labels, annotations map[string]string) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": injector.VirtualMachineGroup + "/" + injector.VirtualMachineVersion, "kind": injector.VirtualMachineKind,
			"spec": map[string]any{"machineIP": "192.168.10.5", "services": []any{map[string]any{"serviceName": "db", "port": int64(5432)}}},
		}}
		u.SetName(name)
		u.SetNamespace(ns)
		u.SetLabels(labels)
		u.SetAnnotations(annotations)
		return u
	}
	// The configuration takes a moment to reach the apiserver's admission
	// chain: dry runs until one comes back labelled.
	eventually(t, 30*time.Second, "the injector to be called for VirtualMachines", func() (bool, error) {
		probe := vm("probe", meshed, nil, nil)
		if err := e.cl.Create(ctx, probe, client.DryRunAll); err != nil {
			return false, err
		}
		return probe.GetLabels()[injector.ProxyUUIDLabel] != "", nil
	})

	tests := []struct {
		name        string
		ns          string
		labels      map[string]string
		annotations map[string]string
		labelled    bool
	}{
		{name: "db", ns: meshed, labelled: true},
		{name: "copied", ns: meshed, labels: map[string]string{injector.ProxyUUIDLabel: "copied", "app": "db"}, labelled: true},
		{name: "opted-out", ns: meshed, annotations: map[string]string{injector.SidecarInjectionAnnotation: "disabled"}},
		{name: "outside", ns: outside},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		created := vm(tc.name, tc.ns, tc.labels, tc.annotations)
		if err := e.cl.Create(ctx, created); err != nil {
			t.Fatalf("VirtualMachine %s/%s: %v", tc.ns, tc.name, err)
		}
		stored := &unstructured.Unstructured{}
		stored.SetGroupVersionKind(created.GroupVersionKind())
		if err := e.cl.Get(ctx, client.ObjectKeyFromObject(created), stored); err != nil {
			t.Fatal(err)
		}
		labels := stored.GetLabels()
		id := labels[injector.ProxyUUIDLabel]
		if !tc.labelled {
			if _, err := uuid.Parse(id); err == nil || len(labels) != len(tc.labels) {
				t.Errorf("%s/%s stored with labels %v, want %v", tc.ns, tc.name, labels, tc.labels)
			}
			continue
		}
		if _, err := uuid.Parse(id); err != nil || seen[id] {
			t.Errorf("%s/%s stored with %s=%q, want a fresh uuid", tc.ns, tc.name, injector.ProxyUUIDLabel, id)
		}
		seen[id] = true
		for k, v := range tc.labels {
			if k != injector.ProxyUUIDLabel && labels[k] != v {
				t.Errorf("%s/%s label %s=%q, want %q kept", tc.ns, tc.name, k, labels[k], v)
			}
		}
		if ip, _, _ := unstructured.NestedString(stored.Object, "spec", "machineIP"); ip != "192.168.10.5" {
			t.Errorf("%s/%s spec.machineIP %q, want it as sent", tc.ns, tc.name, ip)
		}
		if svcs, _, _ := unstructured.NestedSlice(stored.Object, "spec", "services"); len(svcs) != 1 {
			t.Errorf("%s/%s spec.services %v, want it as sent", tc.ns, tc.name, svcs)
		}
	}
	if s := bootstrapSecrets(t, ctx, e.cl, meshed); len(s) != 0 {
		t.Errorf("%d bootstrap Secrets in %s, want none for VirtualMachines", len(s), meshed)
	}
	if n := ca.Issued(); n != 0 {
		t.Errorf("%d certificates issued, want none for VirtualMachines", n)
	}
}
