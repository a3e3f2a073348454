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
	if fsmnames.MutatingConfigurationName("fsm") != "fsm-webhook-fsm" || fsmnames.ValidatingConfigurationName("fsm") != "fsm-validator-mesh-fsm" {
		t.Errorf("configuration names for mesh fsm: %s, %s", fsmnames.MutatingConfigurationName("fsm"), fsmnames.ValidatingConfigurationName("fsm"))
	}
	for _, p := range []string{fsmnames.InjectorPath, fsmnames.ValidatorPath, fsmnames.ConverterPath} {
		if p == "" || p[0] != '/' {
			t.Errorf("path %q does not start with /", p)
		}
	}
}
