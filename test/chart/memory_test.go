package chart_test

import (
	"reflect"
	"testing"
)

// TestRenderGoMemLimit: the Go runtime learns the container's memory limit
// from the downward API, whatever sets the limit (fsm.webhooks.resources,
// FSM's fsm.injector.resource, the default); serve learns its pod IP
// (--pod-ips, through FSM_POD_IPS) the same way.
func TestRenderGoMemLimit(t *testing.T) {
	want := []any{map[string]any{
		"name": "GOMEMLIMIT",
		"valueFrom": map[string]any{"resourceFieldRef": map[string]any{
			"containerName": "fsm-webhooks", "resource": "limits.memory",
		}},
	}, map[string]any{
		"name":      "FSM_POD_IPS",
		"valueFrom": map[string]any{"fieldRef": map[string]any{"fieldPath": "status.podIPs"}},
	}}
	for _, values := range []string{
		"",
		"fsm: {webhooks: {resources: {limits: {memory: 96Mi}}}}",
		"fsm: {injector: {resource: {limits: {memory: 256Mi}}}}",
	} {
		d := mustFind(t, mustRender(t, values), "Deployment", "fsm-webhooks")
		c := container(t, d)
		if c["name"] != "fsm-webhooks" {
			t.Fatalf("values %q: container %q, want fsm-webhooks (resourceFieldRef names it)", values, c["name"])
		}
		if got := c["env"]; !reflect.DeepEqual(got, want) {
			t.Errorf("values %q: env = %v, want %v", values, got, want)
		}
	}
}
