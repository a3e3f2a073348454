package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestRecoverOriginalProbesRefusesBadPorts: the original-port headers of an
// already injected pod come from whoever wrote the pod, not from us. A value
// that is no TCP port (negative, or past int32 and wrapping onto a real port:
// 2^32+80 read as 80) recovers no probe instead of a wrong one.
func TestRecoverOriginalProbesRefusesBadPorts(t *testing.T) {
	for _, tc := range []struct {
		header, value string
		want          int32 // 0: no probe recovered
	}{
		{originalHTTPPortHeader, "8080", 8080},
		{originalTCPPortHeader, "443", 443},
		{originalHTTPPortHeader, "4294967376", 0},
		{originalTCPPortHeader, "4294967376", 0},
		{originalHTTPPortHeader, "-1", 0},
		{originalTCPPortHeader, "65536", 0},
		{originalHTTPPortHeader, "eighty", 0},
	} {
		c := &corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
			HTTPGet: &corev1.HTTPGetAction{Path: HealthcheckPath, HTTPHeaders: []corev1.HTTPHeader{{Name: tc.header, Value: tc.value}}},
		}}}
		got, ok := recoverOriginalProbes([]*corev1.Container{c})["app"][probeReadiness]
		if got.Port != tc.want || ok != (tc.want != 0) {
			t.Errorf("%s: %s: recovered %v port %d, want port %d (none for 0)", tc.header, tc.value, ok, got.Port, tc.want)
		}
	}
}

// TestRecoverOriginalProbesOnlyFromRewritten: only a probe to the health
// path is one the injector rewrote; an app probe that happens to carry an
// original-port header is the app's own.
func TestRecoverOriginalProbesOnlyFromRewritten(t *testing.T) {
	c := &corev1.Container{Name: "app", ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Path: "/ready", HTTPHeaders: []corev1.HTTPHeader{{Name: originalHTTPPortHeader, Value: "8080"}}},
	}}}
	if got := recoverOriginalProbes([]*corev1.Container{c}); len(got) != 0 {
		t.Fatalf("recovered %v from the app's own probe, want nothing", got)
	}
}
