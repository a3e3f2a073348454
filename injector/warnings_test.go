package injector

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// truncateAtTotalRunes is where the apiserver starts cutting every warning
// of a response to warning.MaxRunes runes (k8s.io/apiserver
// pkg/endpoints/filters/warning.go), dropping later ones if still over.
const truncateAtTotalRunes = 4096

// worstWarnings are the warnings of WorstWarningsPod, with a dnsConfig and
// the local DNS proxy on too.
func worstWarnings(t *testing.T) []string {
	t.Helper()
	pod := WorstWarningsPod("p", "app")
	pod.Spec.DNSPolicy = corev1.DNSDefault
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Searches: []string{"corp.example"}}
	s := DefaultSettings()
	s.LocalDNSProxy = true
	m, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", map[string]string{MetricsAnnotation: "enabled"}),
		Settings: s, Mesh: testMesh, ProxyUUID: "u-1", ControllerService: testControllerService()})
	if err != nil {
		t.Fatal(err)
	}
	return m.Warnings
}

// TestWarningsStayWhole: the warnings of a pod that trips nearly all of
// them reach the client whole: each at most warning.MaxRunes runes, all
// together under the apiserver's truncation threshold, each ending with its
// docs tag. They were 18 of 120-360 runes, 5211 in total, so the
// apiserver cut every one to 256 runes, mid-sentence.
func TestWarningsStayWhole(t *testing.T) {
	ws := worstWarnings(t)
	total := 0
	for _, w := range ws {
		n := utf8.RuneCountInString(w)
		total += n
		t.Logf("%3d %s", n, w)
		if n > warning.MaxRunes {
			t.Errorf("warning of %d runes, over %d: %s", n, warning.MaxRunes, w)
		}
		if !strings.HasSuffix(w, "]") || !strings.Contains(w, " [docs: ") {
			t.Errorf("warning without its docs tag: %s", w)
		}
	}
	t.Logf("%d warnings, %d runes in total", len(ws), total)
	if total > truncateAtTotalRunes {
		t.Errorf("%d warnings of %d runes in total, over the %d past which the apiserver cuts each to %d", len(ws), total, truncateAtTotalRunes, warning.MaxRunes)
	}
	if len(ws) < 9 {
		t.Errorf("%d warnings, want every kind: %q", len(ws), ws)
	}
}

// TestEveryWarningFits drives every warning the injector can give with the
// longest inputs a pod can hold (63-character names, dozens of containers,
// annotation values of any length): none is over warning.MaxRunes runes.
func TestEveryWarningFits(t *testing.T) {
	long := func(i int) string { return fmt.Sprintf("c%02d-%s", i, strings.Repeat("x", 59)) }
	pod := WorstWarningsPod("p", "app")
	pod.Annotations = map[string]string{
		"prometheus.io/scrape": strings.Repeat("no", 500), "prometheus.io/port": strings.Repeat("9", 500), "prometheus.io/path": strings.Repeat("/m", 500),
	}
	pod.Spec.DNSPolicy = corev1.DNSNone
	pod.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"1.1.1.1"}}
	for i := range pod.Spec.InitContainers {
		pod.Spec.InitContainers[i].Name = long(90 + i)
	}
	for i := range 40 {
		pod.Spec.InitContainers = append(pod.Spec.InitContainers, corev1.Container{Name: long(50 + i), Image: "s", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)})
	}
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		c.Name = long(i)
		if c.ReadinessProbe != nil {
			c.ReadinessProbe.HTTPGet.Scheme = corev1.URIScheme(strings.Repeat("h", 300))
		}
	}
	for i := range 40 {
		pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: long(10 + i), Image: "a",
			Ports: []corev1.ContainerPort{{ContainerPort: ProxyOutboundPort}, {ContainerPort: LivenessProbePort}, {ContainerPort: 5300, Protocol: corev1.ProtocolUDP}}})
	}
	s := DefaultSettings()
	s.LocalDNSProxy = true
	for _, policy := range []corev1.RestartPolicy{corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure} {
		pod.Spec.RestartPolicy = policy
		m, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", map[string]string{MetricsAnnotation: "enabled"}),
			Settings: s, Mesh: testMesh, ProxyUUID: "u-1", ControllerService: testControllerService()})
		if err != nil {
			t.Fatal(err)
		}
		kinds := map[string]bool{}
		for _, w := range m.Warnings {
			if n := utf8.RuneCountInString(w); n > warning.MaxRunes {
				t.Errorf("warning of %d runes, over %d: %s", n, warning.MaxRunes, w)
			}
			kinds[w[strings.LastIndex(w, "[docs: "):]] = true
		}
		for _, name := range []string{warnProxyUID, warnPortCollision, warnHealthPort, warnScrapeAnnotations, warnLocalDNS, warnProbePort, warnProbeScheme, warnNativeSidecars, warnNeverCompletes} {
			if !kinds[docsTag(name)[1:]] {
				t.Errorf("no %s warning among %d", name, len(m.Warnings))
			}
		}
	}
}
