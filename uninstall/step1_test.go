package uninstall

import (
	"context"
	"testing"

	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// A webhook configuration whose Service still selects FSM's pods is kept:
// `helm uninstall` right after step 1 of a takeover (createServices=false,
// FSM's Services in place) would otherwise take away the registrations
// FSM's running injector and controller answer, and FSM's injector writes
// its own only at start: pods would be admitted without a sidecar. One whose
// Service is ours, or gone, is deleted, so no configuration is left pointing
// at nothing.
func TestConfigurationsServedByFSMKept(t *testing.T) {
	for _, tc := range []struct {
		name     string
		selector map[string]string // of both Services; nil: no Services
		kept     bool
	}{
		{"no Services", nil, false},
		{"Services select ours", map[string]string{"app": "fsm-webhooks"}, false},
		{"FSM's injector and controller", map[string]string{"app": "fsm-injector"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c := newCluster()
			adm := c.cs.AdmissionregistrationV1()
			ref := func(name string) admv1.WebhookClientConfig {
				return admv1.WebhookClientConfig{Service: &admv1.ServiceReference{Namespace: ns, Name: name}}
			}
			m, err := adm.MutatingWebhookConfigurations().Get(ctx, fsmnames.MutatingConfigurationName("fsm"), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			m.Webhooks = []admv1.MutatingWebhook{{Name: "fsm-inject.k8s.io", ClientConfig: ref("fsm-injector")}}
			if _, err := adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			v, err := adm.ValidatingWebhookConfigurations().Get(ctx, fsmnames.ValidatingConfigurationName("fsm"), metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			v.Webhooks = []admv1.ValidatingWebhook{{Name: "fsm-validator.k8s.io", ClientConfig: ref("fsm-validator")}}
			if _, err := adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{}); err != nil {
				t.Fatal(err)
			}
			if tc.selector != nil {
				for name, app := range map[string]string{"fsm-injector": "fsm-injector", "fsm-validator": "fsm-controller"} {
					sel := tc.selector
					if tc.kept {
						sel = map[string]string{"app": app}
					}
					if _, err := c.cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{
						ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: sel},
					}, metav1.CreateOptions{}); err != nil {
						t.Fatal(err)
					}
				}
			}
			o := Options{Namespace: ns, MeshName: "fsm", Deployment: "fsm-webhooks"}
			if err := run(ctx, c.cs, c.apiext, c.dyn, c.meta, o); err != nil {
				t.Fatal(err)
			}
			_, errM := adm.MutatingWebhookConfigurations().Get(ctx, m.Name, metav1.GetOptions{})
			_, errV := adm.ValidatingWebhookConfigurations().Get(ctx, v.Name, metav1.GetOptions{})
			if tc.kept && (errM != nil || errV != nil) {
				t.Errorf("configurations answered by FSM's pods deleted: mutating %v, validating %v", errM, errV)
			}
			if !tc.kept && (errM == nil || errV == nil) {
				t.Errorf("configurations kept though FSM does not serve them: mutating %v, validating %v", errM, errV)
			}
		})
	}
}
