package fsmnames_test

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	configv1alpha1 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha1"
	configv1alpha2 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha2"
	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// The API types keep their own spelling of the group (they import nothing of
// ours); it must be this one.
func TestConfigGroupIsTheAPIGroup(t *testing.T) {
	for _, gv := range []string{configv1alpha1.GroupVersion.Group, configv1alpha2.GroupVersion.Group, configv1alpha3.GroupVersion.Group} {
		if gv != fsmnames.ConfigGroup {
			t.Errorf("API group %q, fsmnames.ConfigGroup %q", gv, fsmnames.ConfigGroup)
		}
	}
}

// Every name is one the apiserver accepts for its object, for a mesh name
// as long as the chart allows (a DNS-1123 label).
func TestNamesAreValid(t *testing.T) {
	mesh := strings.Repeat("m", validation.DNS1123LabelMaxLength)
	objects := map[string]string{
		"CRD":               fsmnames.MeshConfigCRDName,
		"MeshConfig":        fsmnames.MeshConfigName,
		"CA Secret":         fsmnames.CABundleSecretName,
		"injector Secret":   fsmnames.InjectorCertSecret,
		"validator Secret":  fsmnames.ValidatorCertSecret,
		"converter Secret":  fsmnames.ConverterCertSecret,
		"bootstrap Secret":  fsmnames.BootstrapSecretName("6c1b9bde-3cb0-4b2a-8e8b-6c1ad0c38a2e"),
		"mutating config":   fsmnames.MutatingConfigurationName(mesh),
		"validating config": fsmnames.ValidatingConfigurationName(mesh),
		"injector Service":  fsmnames.InjectorService,
		"validator Service": fsmnames.ValidatorService,
		"converter Service": fsmnames.ConverterService,
	}
	for what, name := range objects {
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("%s name %q: %v", what, name, errs)
		}
	}
	for _, svc := range []string{fsmnames.InjectorService, fsmnames.ValidatorService, fsmnames.ConverterService} {
		if errs := validation.IsDNS1035Label(svc); len(errs) > 0 {
			t.Errorf("Service name %q: %v", svc, errs)
		}
	}
	for _, key := range []string{fsmnames.MonitoredByLabel, fsmnames.IgnoreLabel, fsmnames.ControlPlaneLabel} {
		if errs := validation.IsQualifiedName(key); len(errs) > 0 {
			t.Errorf("label key %q: %v", key, errs)
		}
	}
	for k, v := range fsmnames.ConfigurationLabels(mesh) {
		if errs := append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...); len(errs) > 0 {
			t.Errorf("configuration label %s=%s: %v", k, v, errs)
		}
	}
	for _, p := range []string{fsmnames.InjectorPath, fsmnames.ValidatorPath, fsmnames.ConverterPath} {
		if p == "" || p[0] != '/' {
			t.Errorf("path %q does not start with /", p)
		}
	}
}

// TestFSMContract pins every name to FSM v1.5.1's spelling: users' labels,
// charts, RBAC and scripts rely on them, so a change here must be deliberate.
// The other tests use the constants.
func TestFSMContract(t *testing.T) {
	for got, want := range map[string]string{
		fsmnames.MonitoredByLabel:                   "flomesh.io/monitored-by",
		fsmnames.IgnoreLabel:                        "flomesh.io/ignore",
		fsmnames.ControlPlaneLabel:                  "control-plane",
		fsmnames.ConfigGroup:                        "config.flomesh.io",
		fsmnames.MeshConfigCRDName:                  "meshconfigs.config.flomesh.io",
		fsmnames.MeshConfigName:                     "fsm-mesh-config",
		fsmnames.CABundleSecretName:                 "fsm-ca-bundle",
		fsmnames.InjectorPath:                       "/mutate-pod-creation",
		fsmnames.ValidatorPath:                      "/validate",
		fsmnames.ConverterPath:                      "/convert",
		fsmnames.InjectorService:                    "fsm-injector",
		fsmnames.ValidatorService:                   "fsm-validator",
		fsmnames.ConverterService:                   "fsm-bootstrap",
		fsmnames.InjectorCertSecret:                 "mutating-webhook-cert-secret",
		fsmnames.ValidatorCertSecret:                "validating-webhook-cert-secret",
		fsmnames.ConverterCertSecret:                "crd-converter-cert-secret",
		fsmnames.BootstrapSecretName("u1"):          "sidecar-bootstrap-config-u1",
		fsmnames.MutatingConfigurationName("fsm"):   "fsm-webhook-fsm",
		fsmnames.ValidatingConfigurationName("fsm"): "fsm-validator-mesh-fsm",
	} {
		if got != want {
			t.Errorf("%q, FSM's name is %q", got, want)
		}
	}
	labels := fsmnames.ConfigurationLabels("fsm")
	if len(labels) != 2 || labels["app.kubernetes.io/name"] != "flomesh.io" || labels["app.kubernetes.io/instance"] != "fsm" {
		t.Errorf("configuration labels %v", labels)
	}
}
