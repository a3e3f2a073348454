package injector

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/version"
)

// nativeSidecarsSince is the first Kubernetes release whose apiserver keeps
// an init container's restartPolicy by default (SidecarContainers: alpha
// and off in 1.28, beta and on from 1.29).
var nativeSidecarsSince = version.MajorMinor(1, 29)

// nativeSidecarsProblem is nil when native mode can work on an apiserver
// reporting kubeVersion (its /version gitVersion; "", unparsable or v0.0.0,
// what an apiserver built without version stamping says: unknown, let
// through). An older one drops restartPolicy: Always from the sidecar
// container (1.27 does not know the field, 1.28 drops it with its gate off),
// leaving a plain init container that never exits, so the pod would sit in
// Init for ever with its bootstrap Secret written (a Job never runs). where
// is onNamespace or "".
func nativeSidecarsProblem(kubeVersion, where string) error {
	if kubeVersion == "" {
		return nil
	}
	v, err := version.ParseGeneric(kubeVersion)
	if err != nil || v.Major() == 0 || v.AtLeast(nativeSidecarsSince) {
		return nil
	}
	return fmt.Errorf("annotation %q%s asks for a native sidecar, but the apiserver is Kubernetes %s (read when fsm-webhooks started): "+
		"native sidecars (init containers with restartPolicy: Always) need Kubernetes >= 1.29 (SidecarContainers), and an older apiserver "+
		"drops the field, so the %s init container would never exit and the pod would never start; remove the annotation or set it to \"false\"",
		SidecarNativeAnnotation, where, kubeVersion, SidecarContainerName)
}
