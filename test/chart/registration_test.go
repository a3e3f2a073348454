package chart_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/converter"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

func typed(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	js, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(js, into); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// TestConfigurationsMatchServers: the configurations the chart installs are
// the ones the servers register themselves in URL mode
// (injector.Registration, validator.Registration), so the servers, which
// only patch the caBundle of an existing configuration, serve what the
// chart routes to them.
func TestConfigurationsMatchServers(t *testing.T) {
	for _, mesh := range []string{"fsm", "blue"} {
		r, err := charttest.Render("mesh-system", mustValues(t, "fsm: {meshName: "+mesh+"}"))
		if err != nil {
			t.Fatal(err)
		}

		inj := injector.Registration(mesh, "mesh-system")
		var m admv1.MutatingWebhookConfiguration
		typed(t, mustFind(t, r, "MutatingWebhookConfiguration", inj.Name), &m)
		want := inj.Mutating.Webhooks[0]
		got := m.Webhooks[0]
		compare(t, mesh+" injector", got.Name, want.Name, got.Rules, want.Rules, got.FailurePolicy, want.FailurePolicy,
			got.MatchPolicy, want.MatchPolicy, got.SideEffects, want.SideEffects, got.TimeoutSeconds, want.TimeoutSeconds,
			got.AdmissionReviewVersions, want.AdmissionReviewVersions, got.MatchConditions, want.MatchConditions)
		checkService(t, got.ClientConfig, "mesh-system", fsmnames.InjectorService, inj.Path, 9090)
		checkSelector(t, mesh, got.NamespaceSelector, want.NamespaceSelector)
		checkLabels(t, m.Labels, inj.Mutating.Labels)

		val := validator.Registration(mesh, "mesh-system")
		var v admv1.ValidatingWebhookConfiguration
		typed(t, mustFind(t, r, "ValidatingWebhookConfiguration", val.Name), &v)
		checkLabels(t, v.Labels, val.Validating.Labels)
		if got, want := webhookNames(v.Webhooks), webhookNames(val.Validating.Webhooks); !slices.Equal(got, want) {
			t.Errorf("%s validator: chart has webhooks %q, servers register %q", mesh, got, want)
		}
		for _, wantV := range val.Validating.Webhooks {
			i := slices.IndexFunc(v.Webhooks, func(w admv1.ValidatingWebhook) bool { return w.Name == wantV.Name })
			if i < 0 {
				continue
			}
			gotV := v.Webhooks[i]
			// The selector exactly: selecting fewer namespaces would
			// validate less than the servers claim, more would refuse
			// what FSM admitted.
			compare(t, mesh+" validator "+wantV.Name, gotV.Rules, wantV.Rules, gotV.NamespaceSelector, wantV.NamespaceSelector,
				gotV.ObjectSelector, wantV.ObjectSelector, gotV.FailurePolicy, wantV.FailurePolicy,
				gotV.MatchPolicy, wantV.MatchPolicy, gotV.SideEffects, wantV.SideEffects, gotV.TimeoutSeconds, wantV.TimeoutSeconds,
				gotV.AdmissionReviewVersions, wantV.AdmissionReviewVersions, gotV.MatchConditions, wantV.MatchConditions)
			checkService(t, gotV.ClientConfig, "mesh-system", fsmnames.ValidatorService, val.Path, 9093)
		}

		if conv := converter.Registration(); conv.Name != "meshconfigs.config.flomesh.io" {
			t.Errorf("converter registers on CRD %q; the chart's RBAC names meshconfigs.config.flomesh.io", conv.Name)
		}
	}
}

func webhookNames(hooks []admv1.ValidatingWebhook) []string {
	names := make([]string, 0, len(hooks))
	for _, h := range hooks {
		names = append(names, h.Name)
	}
	return names
}

// compare takes got/want pairs.
func compare(t *testing.T, what string, pairs ...any) {
	t.Helper()
	for i := 0; i+1 < len(pairs); i += 2 {
		if !reflect.DeepEqual(pairs[i], pairs[i+1]) {
			g, _ := json.Marshal(pairs[i])
			w, _ := json.Marshal(pairs[i+1])
			t.Errorf("%s: chart has %s, servers register %s", what, g, w)
		}
	}
}

func checkService(t *testing.T, cc admv1.WebhookClientConfig, ns, svc, path string, port int32) {
	t.Helper()
	s := cc.Service
	if s == nil || s.Namespace != ns || s.Name != svc || s.Path == nil || *s.Path != path || s.Port == nil || *s.Port != port {
		t.Errorf("clientConfig %+v, want %s/%s:%d%s", cc, ns, svc, port, path)
	}
	if cc.URL != nil || len(cc.CABundle) != 0 {
		t.Errorf("clientConfig carries url or caBundle: %+v", cc)
	}
}

// checkSelector: the chart selects the same namespaces as the servers would,
// excluding at least every namespace they exclude.
func checkSelector(t *testing.T, mesh string, got, want *metav1.LabelSelector) {
	t.Helper()
	if got == nil || !reflect.DeepEqual(got.MatchLabels, want.MatchLabels) {
		t.Errorf("%s: namespaceSelector matchLabels %v, want %v", mesh, got, want.MatchLabels)
		return
	}
	for _, w := range want.MatchExpressions {
		i := slices.IndexFunc(got.MatchExpressions, func(g metav1.LabelSelectorRequirement) bool {
			return g.Key == w.Key && g.Operator == w.Operator
		})
		if i < 0 {
			t.Errorf("%s: namespaceSelector lacks %v", mesh, w)
			continue
		}
		for _, v := range w.Values {
			if !slices.Contains(got.MatchExpressions[i].Values, v) {
				t.Errorf("%s: namespaceSelector %s %s lacks %q", mesh, w.Key, w.Operator, v)
			}
		}
	}
}

func checkLabels(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("label %s=%q, want %q", k, got[k], v)
		}
	}
}
