package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

func TestDecide(t *testing.T) {
	ns := func(name string, labels, ann map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels, Annotations: ann}}
	}
	monitored := map[string]string{fsmnames.MonitoredByLabel: "fsm"}
	enabled := map[string]string{SidecarInjectionAnnotation: "enabled"}
	pod := func(ann map[string]string, mutate ...func(*corev1.Pod)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: ann}}
		for _, m := range mutate {
			m(p)
		}
		return p
	}
	hostNet := func(p *corev1.Pod) { p.Spec.HostNetwork = true }
	withVolume := func(src corev1.VolumeSource, label string) func(*corev1.Pod) {
		return func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: BootstrapVolumeName, VolumeSource: src}}
			if label != "" {
				p.Labels = map[string]string{ProxyUUIDLabel: label}
			}
		}
	}
	withSidecar := func(p *corev1.Pod) {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: SidecarContainerName})
	}
	secretVol := corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: BootstrapSecretPrefix + "u1"}}

	tests := []struct {
		name    string
		pod     *corev1.Pod
		ns      *corev1.Namespace
		inject  bool
		reinj   bool
		existID string
		skip    SkipReason
		err     string
	}{
		{name: "namespace enabled", pod: pod(nil), ns: ns("app", monitored, enabled), inject: true},
		{name: "pod enabled, namespace silent", pod: pod(map[string]string{SidecarInjectionAnnotation: "true"}), ns: ns("app", monitored, nil), inject: true},
		{name: "pod yes", pod: pod(map[string]string{SidecarInjectionAnnotation: "yes"}), ns: ns("app", monitored, nil), inject: true},
		{name: "case-insensitive", pod: pod(map[string]string{SidecarInjectionAnnotation: "EnAbLeD"}), ns: ns("app", monitored, nil), inject: true},
		{name: "pod disabled beats namespace enabled", pod: pod(map[string]string{SidecarInjectionAnnotation: "disabled"}), ns: ns("app", monitored, enabled), skip: SkipDisabled},
		{name: "pod no", pod: pod(map[string]string{SidecarInjectionAnnotation: "no"}), ns: ns("app", monitored, enabled), skip: SkipDisabled},
		{name: "pod false", pod: pod(map[string]string{SidecarInjectionAnnotation: "false"}), ns: ns("app", monitored, enabled), skip: SkipDisabled},
		{name: "pod enabled beats namespace disabled", pod: pod(map[string]string{SidecarInjectionAnnotation: "enabled"}), ns: ns("app", monitored, map[string]string{SidecarInjectionAnnotation: "disabled"}), inject: true},
		{name: "no annotation anywhere", pod: pod(nil), ns: ns("app", monitored, nil), skip: SkipNotEnabled},
		{name: "pod value on", pod: pod(map[string]string{SidecarInjectionAnnotation: "on"}), ns: ns("app", monitored, nil),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": on`},
		{name: "pod value 1", pod: pod(map[string]string{SidecarInjectionAnnotation: "1"}), ns: ns("app", monitored, enabled),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": 1`},
		{name: "pod value empty", pod: pod(map[string]string{SidecarInjectionAnnotation: ""}), ns: ns("app", monitored, enabled),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": `},
		{name: "namespace value bad", pod: pod(nil), ns: ns("app", monitored, map[string]string{SidecarInjectionAnnotation: "maybe"}),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": maybe (on the namespace)`},
		// FSM parses both before the pod's decides (pkg/injector/webhook.go
		// mustInject): a bad namespace value refuses every pod there.
		{name: "bad namespace value refuses even with a valid pod value", pod: pod(map[string]string{SidecarInjectionAnnotation: "true"}), ns: ns("app", monitored, map[string]string{SidecarInjectionAnnotation: "maybe"}),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": maybe (on the namespace)`},
		// A static pod's mirror, created by the kubelet: before hostNetwork
		// (a static pod often has both) and the annotations, whatever they say.
		{name: "mirror pod checked first", pod: pod(map[string]string{corev1.MirrorPodAnnotationKey: "5d0c0f4e", SidecarInjectionAnnotation: "bogus"}, hostNet), ns: ns("app", monitored, enabled), skip: SkipMirrorPod},
		{name: "mirror pod with an empty hash", pod: pod(map[string]string{corev1.MirrorPodAnnotationKey: ""}), ns: ns("app", monitored, enabled), skip: SkipMirrorPod},
		{name: "mirror pod explicitly enabled", pod: pod(map[string]string{corev1.MirrorPodAnnotationKey: "5d0c0f4e", SidecarInjectionAnnotation: "enabled"}), ns: ns("app", monitored, nil), skip: SkipMirrorPod},
		{name: "hostNetwork checked first", pod: pod(map[string]string{SidecarInjectionAnnotation: "bogus"}, hostNet), ns: ns("app", monitored, enabled), skip: SkipHostNetwork},
		{name: "kube-system", pod: pod(nil), ns: ns("kube-system", monitored, enabled), skip: SkipSystemNamespace},
		{name: "kube-public", pod: pod(nil), ns: ns("kube-public", monitored, enabled), skip: SkipSystemNamespace},
		{name: "fsm namespace", pod: pod(nil), ns: ns("fsm-system", monitored, enabled), skip: SkipFSMNamespace},
		{name: "not monitored", pod: pod(nil), ns: ns("app", nil, enabled), skip: SkipNotMonitored},
		{name: "monitored by another mesh", pod: pod(nil), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "other"}, enabled), skip: SkipNotMonitored},
		{name: "monitored but flomesh.io/ignore", pod: pod(nil), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.IgnoreLabel: ""}, enabled), skip: SkipIgnored},
		{name: "monitored but control-plane", pod: pod(nil), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.ControlPlaneLabel: "true"}, enabled), skip: SkipIgnored},
		{name: "already injected (uuid matches Secret)", pod: pod(nil, withVolume(secretVol, "u1")), ns: ns("app", monitored, enabled), inject: true, reinj: true, existID: "u1"},
		{name: "copy without uuid label", pod: pod(nil, withVolume(secretVol, "")), ns: ns("app", monitored, enabled), inject: true, reinj: true},
		{name: "copy with other uuid", pod: pod(nil, withVolume(secretVol, "u2")), ns: ns("app", monitored, enabled), inject: true, reinj: true},
		// kubectl debug --copy-to drops the annotations of a pod meshed by
		// its own: the copy runs the sidecar anyway and gets its own identity.
		{name: "copy, annotations dropped, namespace silent", pod: pod(nil, withVolume(secretVol, ""), withSidecar), ns: ns("app", monitored, nil), inject: true, reinj: true},
		{name: "copy, annotations dropped, namespace disabled", pod: pod(nil, withVolume(secretVol, ""), withSidecar), ns: ns("app", monitored, map[string]string{SidecarInjectionAnnotation: "disabled"}), inject: true, reinj: true},
		{name: "copy keeping its labels, namespace silent", pod: pod(nil, withVolume(secretVol, "u1"), withSidecar), ns: ns("app", monitored, nil), inject: true, reinj: true, existID: "u1"},
		{name: "copy with a bad annotation is still refused", pod: pod(map[string]string{SidecarInjectionAnnotation: "on"}, withVolume(secretVol, ""), withSidecar), ns: ns("app", monitored, nil),
			err: `invalid annotation value for key "flomesh.io/sidecar-injection": on`},
		{name: "copy in a namespace not monitored", pod: pod(nil, withVolume(secretVol, ""), withSidecar), ns: ns("app", nil, nil), skip: SkipNotMonitored},
		{name: "copy in an ignored namespace", pod: pod(nil, withVolume(secretVol, ""), withSidecar), ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.IgnoreLabel: ""}, nil), skip: SkipIgnored},
		{name: "copy of a hostNetwork pod", pod: pod(nil, withVolume(secretVol, ""), withSidecar, hostNet), ns: ns("app", monitored, nil), skip: SkipHostNetwork},
		// A copy whose own annotation disables injection: meant, left as it is.
		{name: "copy disabled by its own annotation", pod: pod(map[string]string{SidecarInjectionAnnotation: "disabled"}, withVolume(secretVol, ""), withSidecar), ns: ns("app", monitored, nil), skip: SkipDisabled},
		// A volume of that name without the sidecar, injection off: the user's.
		{name: "bootstrap volume, no sidecar, injection off", pod: pod(nil, withVolume(secretVol, "")), ns: ns("app", monitored, nil), skip: SkipNotEnabled},
		// A user's own container named "sidecar", no bootstrap volume,
		// injection off: not a copy of an injected pod, left alone.
		{name: "app container named sidecar, injection off", pod: pod(nil, withSidecar), ns: ns("app", monitored, nil), skip: SkipNotEnabled},
		// Only the bootstrap volume's Secret names the pod's uuid: another
		// volume mounting that Secret does not make the uuid the pod's.
		{name: "uuid's Secret mounted by another volume", pod: pod(nil, withVolume(corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}, "u1"), func(p *corev1.Pod) {
			p.Spec.Volumes = append(p.Spec.Volumes, corev1.Volume{Name: "other", VolumeSource: secretVol})
		}), ns: ns("app", monitored, enabled), inject: true, reinj: true},
		// A uuid with the CN's delimiter is none an injector generated:
		// kept, it would name another identity in the certificate's CN.
		{name: "copy whose uuid label holds a dot", pod: pod(nil, withVolume(corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: BootstrapSecretPrefix + "u.1"}}, "u.1")),
			ns: ns("app", monitored, enabled), inject: true, reinj: true},
		{name: "bootstrap volume not a Secret", pod: pod(nil, withVolume(corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}, "u1")), ns: ns("app", monitored, enabled), inject: true, reinj: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := Decide(DecideInput{Pod: tc.pod, Namespace: tc.ns, MeshName: "fsm", FSMNamespace: "fsm-system"})
			if tc.err != "" {
				if d.Err == nil || d.Err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", d.Err, tc.err)
				}
				if d.Inject {
					t.Fatal("denied pod must not be injected")
				}
				return
			}
			if d.Err != nil {
				t.Fatalf("unexpected error %v", d.Err)
			}
			if d.Inject != tc.inject || d.Reinject != tc.reinj || d.Skip != tc.skip || d.ExistingUUID != tc.existID {
				t.Fatalf("got %+v, want inject=%v reinject=%v skip=%q existing=%q", d, tc.inject, tc.reinj, tc.skip, tc.existID)
			}
		})
	}
}

// TestOutOfMeshFixNamesTheLabel: the writer's BootstrapSecretNotWritten
// Event tells the user which namespace label to restore or remove; the
// label comes from the admission's own rule (namespaceExcluded).
func TestOutOfMeshFixNamesTheLabel(t *testing.T) {
	ns := func(name string, labels map[string]string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	}
	for _, tc := range []struct {
		name string
		ns   *corev1.Namespace
		want string
	}{
		{name: "unlabelled", ns: ns("app", nil),
			want: "namespace app is not in mesh fsm: label it " + fsmnames.MonitoredByLabel + "=fsm"},
		{name: "another mesh's", ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "other"}),
			want: "namespace app is not in mesh fsm: label it " + fsmnames.MonitoredByLabel + "=fsm"},
		{name: "ignored", ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.IgnoreLabel: "true"}),
			want: "namespace app is excluded from mesh fsm by its label " + fsmnames.IgnoreLabel + ": remove the label"},
		{name: "control plane", ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm", fsmnames.ControlPlaneLabel: ""}),
			want: "namespace app is excluded from mesh fsm by its label " + fsmnames.ControlPlaneLabel + ": remove the label"},
		{name: "fsm's own", ns: ns("fsm-system", map[string]string{fsmnames.MonitoredByLabel: "fsm"}),
			want: "mesh fsm never injects namespace fsm-system (fsm-namespace)"},
		{name: "in the mesh", ns: ns("app", map[string]string{fsmnames.MonitoredByLabel: "fsm"})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			skip, label := namespaceExcluded(tc.ns, "fsm", "fsm-system")
			got := ""
			if skip != "" {
				got = outOfMeshFix(tc.ns.Name, "fsm", skip, label)
			}
			if got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
}
