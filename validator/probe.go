package validator

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

//go:embed base_meshconfig.yaml
var baseMeshConfigYAML []byte

// denialMarker is a detail only this webhook produces (the CRD schema cannot
// compare two lists), so finding it in an error proves the webhook ran.
const denialMarker = "exclusion wins, so this range is never intercepted"

// BaseMeshConfig returns a valid config.flomesh.io/v1alpha3 MeshConfig (FSM's
// Helm preset) named name in namespace: the base of the probe object, and
// the MeshConfig `local` installs.
func BaseMeshConfig(namespace, name string) (*unstructured.Unstructured, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(baseMeshConfigYAML, &obj); err != nil {
		return nil, fmt.Errorf("embedded base MeshConfig: %w", err)
	}
	u := &unstructured.Unstructured{Object: obj}
	u.SetNamespace(namespace)
	u.SetName(name)
	return u, nil
}

// DemoInvalidMeshConfig returns a v1alpha3 MeshConfig that the CRD schema
// accepts and this webhook denies, with several errors reported at once:
// an included range inside an excluded one, an unknown sidecar log level, an
// unparseable image reference, a sampled fraction above 1 and a bad duration.
// Probe sends it; the `local` demonstration shows its denial.
func DemoInvalidMeshConfig(namespace, name string) (*unstructured.Unstructured, error) {
	u, err := BaseMeshConfig(namespace, name)
	if err != nil {
		return nil, err
	}
	set := func(v any, path ...string) {
		if err == nil {
			err = unstructured.SetNestedField(u.Object, v, path...)
		}
	}
	set([]any{"10.0.0.0/8"}, "spec", "traffic", "outboundIPRangeExclusionList")
	set([]any{"10.1.0.0/16"}, "spec", "traffic", "outboundIPRangeInclusionList")
	set("verbose", "spec", "sidecar", "logLevel")
	set("Flomesh/Pipy:1.5.14", "spec", "sidecar", "sidecarImage")
	set("5 minutes", "spec", "sidecar", "configResyncInterval")
	set("1.5", "spec", "observability", "tracing", "sampledFraction")
	if err != nil {
		return nil, fmt.Errorf("building the demo MeshConfig: %w", err)
	}
	return u, nil
}

// IsWebhookDenial reports whether err is this webhook's denial of a
// DemoInvalidMeshConfig.
func IsWebhookDenial(err error) bool {
	return err != nil && apierrors.IsInvalid(err) && strings.Contains(err.Error(), denialMarker)
}

// Probe is a readiness check through the apiserver: a server-side dry-run
// create of DemoInvalidMeshConfig must be refused by this webhook. It proves
// the webhook configuration routes MeshConfigs here, the apiserver trusts the
// serving certificate, and the handler answers. Nothing is stored.
func Probe(ctx context.Context, c client.Writer, namespace, name string) error {
	obj, err := DemoInvalidMeshConfig(namespace, name)
	if err != nil {
		return err
	}
	err = c.Create(ctx, obj, client.DryRunAll)
	switch {
	case err == nil:
		return errors.New("validator probe: an invalid MeshConfig was accepted (dry run); is the ValidatingWebhookConfiguration routing MeshConfigs to this webhook?")
	case IsWebhookDenial(err):
		return nil
	default:
		return fmt.Errorf("validator probe: dry-run create of an invalid MeshConfig %s/%s was not refused by the validator: %w", namespace, name, err)
	}
}
