package injector

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// TestMutatePodSecurityEnforced: a namespace whose Pod Security Admission
// enforce label is anything but privileged refuses fsm-init (NET_ADMIN, root),
// after this webhook and after the pod's Secret was written; such a pod is
// refused first, naming the label and its value. A pod with a RuntimeClass
// may be exempt by the apiserver's PodSecurity configuration, which the
// webhook cannot read, and NodeLevel interception adds no fsm-init: both are
// left to the apiserver.
func TestMutatePodSecurityEnforced(t *testing.T) {
	const fix = ": Pod Security Admission refuses the injected pod: fsm-init adds capability NET_ADMIN and runs as root to install the pod's iptables rules, " +
		"which only the privileged level allows; label the namespace pod-security.kubernetes.io/enforce=privileged " +
		"(or, if the apiserver's PodSecurity configuration exempts it, remove the label, which has no effect there), " +
		"or opt the pod out with annotation flomesh.io/sidecar-injection: disabled"
	for _, tc := range []struct {
		name   string
		labels map[string]string
		edit   func(*corev1.Pod)
		set    func(*Settings)
		// reinject: an injected pod, as the writer's repair rebuilds the
		// Secret of a stored one: Pod Security Admission admitted it (the
		// label came later, or the namespace is exempt).
		reinject bool
		want     string // "" when injected
	}{
		{name: "baseline", labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"},
			want: `namespace label pod-security.kubernetes.io/enforce "baseline"` + fix},
		{name: "restricted with a version", labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "v1.30"},
			want: `namespace label pod-security.kubernetes.io/enforce "restricted"` + fix},
		// Pod Security Admission reads a value that is no level as restricted.
		{name: "not a level", labels: map[string]string{"pod-security.kubernetes.io/enforce": "Baseline"},
			want: `namespace label pod-security.kubernetes.io/enforce "Baseline" (not a level, enforced as restricted)` + fix},
		{name: "privileged", labels: map[string]string{"pod-security.kubernetes.io/enforce": "privileged"}},
		{name: "warn and audit only", labels: map[string]string{"pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "baseline"}},
		{name: "no label (the cluster's default applies)"},
		{name: "a RuntimeClass the configuration may exempt", labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"},
			edit: func(p *corev1.Pod) { p.Spec.RuntimeClassName = ptr.To("kata") }},
		{name: "a stored pod's Secret rebuilt", labels: map[string]string{"pod-security.kubernetes.io/enforce": "baseline"}, reinject: true},
		{name: "NodeLevel interception: no fsm-init", labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"},
			set: func(s *Settings) { s.InterceptionMode = InterceptionNodeLevel }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(nil)
			if tc.edit != nil {
				tc.edit(pod)
			}
			ns := monitoredNamespace("app", nil)
			for k, v := range tc.labels {
				ns.Labels[k] = v
			}
			s := DefaultSettings()
			if tc.set != nil {
				tc.set(&s)
			}
			if tc.reinject {
				src, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: testMesh, ProxyUUID: "u-0"})
				if err != nil {
					t.Fatal(err)
				}
				pod = src.Pod
			}
			m, err := Mutate(MutateInput{Pod: pod, Namespace: ns, Settings: s, Mesh: testMesh, ProxyUUID: "u-1", Reinject: tc.reinject})
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want == "" && m.Pod.Labels[ProxyUUIDLabel] != "u-1":
				t.Fatal("not injected")
			case tc.want != "" && (err == nil || err.Error() != tc.want):
				t.Fatalf("err = %v\nwant %s", err, tc.want)
			}
		})
	}
}
