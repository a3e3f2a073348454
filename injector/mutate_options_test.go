package injector

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func injectedContainer(t *testing.T, pod *corev1.Pod, name string) corev1.Container {
	t.Helper()
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		if i := slices.IndexFunc(list, func(c corev1.Container) bool { return c.Name == name }); i >= 0 {
			return list[i]
		}
	}
	t.Fatalf("no container %q in the injected pod", name)
	return corev1.Container{}
}

// TestPortExclusionsMerged: the MeshConfig's port exclusion lists and the
// pod's annotations both reach fsm-init's rules (FSM merges the two).
func TestPortExclusionsMerged(t *testing.T) {
	s := DefaultSettings()
	s.OutboundPortExclusionList = []int{6379}
	s.InboundPortExclusionList = []int{9090}
	pod := simplePod(map[string]string{OutboundPortExclusionAnnotation: "5432", InboundPortExclusionAnnotation: "9091"})
	mut, err := mutateWith(t, pod, nil, s, testMesh)
	if err != nil {
		t.Fatal(err)
	}
	script := injectedContainer(t, mut.Pod, InitContainerName).Args[1]
	for chain, ports := range map[string][]string{"FSM_PROXY_OUTBOUND": {"6379", "5432"}, "FSM_PROXY_INBOUND": {"9090", "9091"}} {
		re := regexp.MustCompile(`(?m)^-A ` + chain + ` -p tcp --match multiport --dports (\S+) -j RETURN$`)
		var got []string
		for _, m := range re.FindAllStringSubmatch(script, -1) {
			got = append(got, strings.Split(m[1], ",")...)
		}
		for _, p := range ports {
			if !slices.Contains(got, p) {
				t.Errorf("%s excludes ports %v, want %v (MeshConfig's and the annotation's)", chain, got, ports)
			}
		}
	}
}

// TestSidecarLifecycleHooks: postStart waits for Pipy only when holding the
// app, preStop drains only with graceful exit, each on its own.
func TestSidecarLifecycleHooks(t *testing.T) {
	for _, tc := range []struct {
		hold, graceful string
	}{{"true", "true"}, {"true", "false"}, {"false", "true"}, {"false", "false"}} {
		t.Run("hold "+tc.hold+" graceful "+tc.graceful, func(t *testing.T) {
			pod := simplePod(map[string]string{HoldApplicationAnnotation: tc.hold, GracefulExitAnnotation: tc.graceful})
			mut, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
			if err != nil {
				t.Fatal(err)
			}
			lc := injectedContainer(t, mut.Pod, SidecarContainerName).Lifecycle
			var post, pre []string
			if lc != nil && lc.PostStart != nil {
				post = lc.PostStart.Exec.Command
			}
			if lc != nil && lc.PreStop != nil {
				pre = lc.PreStop.Exec.Command
			}
			if (len(post) > 0) != (tc.hold == "true") || (len(pre) > 0) != (tc.graceful == "true") {
				t.Errorf("postStart %v preStop %v; want postStart %s only when holding, preStop %s only with graceful exit", post, pre, waitPipyCommand, gracefulKillCommand)
			}
		})
	}
}

// TestInitContainerPrivileged: MeshConfig
// spec.sidecar.enablePrivilegedInitContainer makes fsm-init privileged.
func TestInitContainerPrivileged(t *testing.T) {
	for _, want := range []bool{false, true} {
		s := DefaultSettings()
		s.EnablePrivilegedInitContainer = want
		mut, err := mutateWith(t, simplePod(nil), nil, s, testMesh)
		if err != nil {
			t.Fatal(err)
		}
		sc := injectedContainer(t, mut.Pod, InitContainerName).SecurityContext
		if sc == nil || sc.Privileged == nil || *sc.Privileged != want {
			t.Errorf("enablePrivilegedInitContainer %v: fsm-init securityContext %+v", want, sc)
		}
	}
}

// TestSidecarLogLevelUnset: no log level gives Pipy the default level, not
// an empty --log-level.
func TestSidecarLogLevelUnset(t *testing.T) {
	s := DefaultSettings()
	s.LogLevel = ""
	mut, err := mutateWith(t, simplePod(nil), nil, s, testMesh)
	if err != nil {
		t.Fatal(err)
	}
	args := injectedContainer(t, mut.Pod, SidecarContainerName).Args
	if !slices.Contains(args, "--log-level="+DefaultSidecarLogLevel) {
		t.Errorf("sidecar args %v, want --log-level=%s", args, DefaultSidecarLogLevel)
	}
}

// TestMutateRefusesDottedServiceAccount: Mutate itself, not only the writer's
// repair, refuses a ServiceAccount whose dot would make FSM read another
// identity, naming it.
func TestMutateRefusesDottedServiceAccount(t *testing.T) {
	pod := simplePod(nil)
	pod.Spec.ServiceAccountName = "bookstore.bookbuyer"
	_, err := mutateWith(t, pod, nil, DefaultSettings(), testMesh)
	if err == nil || !strings.Contains(err.Error(), `spec.serviceAccountName "bookstore.bookbuyer"`) {
		t.Errorf("error %v, want the refusal naming spec.serviceAccountName", err)
	}
}

// TestReinjectWithoutSidecar: a copy carrying the bootstrap volume but no
// sidecar container is refused with what to remove, not given a Secret no
// container reads.
func TestReinjectWithoutSidecar(t *testing.T) {
	pod := simplePod(nil)
	pod.Spec.Volumes = []corev1.Volume{{Name: BootstrapVolumeName}}
	_, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: DefaultSettings(), Mesh: testMesh, ProxyUUID: "u-1", Reinject: true})
	if err == nil || !strings.Contains(err.Error(), "remove the volume") {
		t.Errorf("error %v, want the refusal naming volume %s", err, BootstrapVolumeName)
	}
}

// TestReinjectIgnoresMissingDNSService: the writer's repair of a copy keeps
// the DNS settings the copy has, so it needs no controller Service even with
// the local DNS proxy on.
func TestReinjectIgnoresMissingDNSService(t *testing.T) {
	first, err := mutateWith(t, simplePod(nil), nil, DefaultSettings(), testMesh)
	if err != nil {
		t.Fatal(err)
	}
	s := DefaultSettings()
	s.LocalDNSProxy = true
	_, err = Mutate(MutateInput{Pod: first.Pod, Namespace: &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, Settings: s, Mesh: testMesh, ProxyUUID: "u-2", Reinject: true})
	if err != nil {
		t.Errorf("reinjection refused: %v", err)
	}
}

// TestLocalDNSPortCollision: with the local DNS proxy on, an app container
// declaring UDP 5300 (where the sidecar's DNS listener is) is warned of;
// without it, not.
func TestLocalDNSPortCollision(t *testing.T) {
	for _, dns := range []bool{false, true} {
		pod := simplePod(nil)
		pod.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 5300, Protocol: corev1.ProtocolUDP}}
		s := DefaultSettings()
		s.LocalDNSProxy = dns
		m, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: testMesh, ProxyUUID: "u-1", ControllerService: testControllerService()})
		if err != nil {
			t.Fatal(err)
		}
		warned := slices.ContainsFunc(m.Warnings, func(w string) bool { return strings.Contains(w, "5300/UDP") })
		if warned != dns {
			t.Errorf("local DNS %v: warnings %q, want a 5300/UDP warning %v", dns, m.Warnings, dns)
		}
	}
}
