package validator

import (
	"context"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestFeatureFlagWithoutMeshConfigCRD: without the MeshConfig CRD every
// feature flag is off, as without a MeshConfig, rather than an error that
// refused every Plugin and AccessCert.
func TestFeatureFlagWithoutMeshConfigCRD(t *testing.T) {
	h := NewHandler(Options{Reader: testenv.NoMeshConfigCRD{}})
	on, err := h.featureFlag(context.Background(), "enablePluginPolicy")
	if err != nil || on {
		t.Fatalf("featureFlag without the MeshConfig CRD = %v, %v; want false, nil", on, err)
	}
}
