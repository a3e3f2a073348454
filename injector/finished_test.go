package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestUUIDFinished: a Secret goes for a finished pod only when every pod the
// pod cache has with its uuid is among the finished ones.
func TestUUIDFinished(t *testing.T) {
	for _, tc := range []struct {
		name               string
		finished, carriers []types.UID
		want               bool
	}{
		{"no finished pod", nil, []types.UID{"a"}, false},
		{"no finished pod, none cached", nil, nil, false},
		{"the one carrier finished", []types.UID{"a"}, []types.UID{"a"}, true},
		{"finished, the pod cache not caught up yet", []types.UID{"a"}, nil, true},
		{"a running pod relabelled with the finished pod's uuid", []types.UID{"a"}, []types.UID{"a", "b"}, false},
		{"two carriers, both finished", []types.UID{"a", "b"}, []types.UID{"b", "a"}, true},
		{"a pod of the same name that runs (another uid)", []types.UID{"a"}, []types.UID{"c"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := uuidFinished(tc.finished, tc.carriers); got != tc.want {
				t.Errorf("uuidFinished(%v, %v) = %v, want %v", tc.finished, tc.carriers, got, tc.want)
			}
		})
	}
}

func TestIsFinished(t *testing.T) {
	for phase, want := range map[corev1.PodPhase]bool{
		corev1.PodPending: false, corev1.PodRunning: false, corev1.PodUnknown: false, "": false,
		corev1.PodSucceeded: true, corev1.PodFailed: true,
	} {
		if got := isFinished(phase); got != want {
			t.Errorf("isFinished(%q) = %v, want %v", phase, got, want)
		}
	}
}
