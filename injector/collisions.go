package injector

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// What the app's own containers may share with what the injector adds: the
// proxy's user id, which fsm-init's rules exempt from interception, and the
// ports the proxy (and fsm-healthcheck) listen on or fsm-init leaves out of
// inbound interception. FSM v1.5.1 injects such pods without a word and
// they are stored, so they are injected the same way, with a warning (as
// Istio documents its uid 1337 as reserved and reports a workload running
// as it, IST0144, without refusing it): the user id may be the image's
// anyway, which admission cannot see, and a declared containerPort is
// informational (the app may never listen on it).

// appBesideProxy is an app container that runs while fsm-init's rules are in
// place and the proxy runs: every regular container, the app's native
// sidecars (init containers with restartPolicy Always, which outlive
// fsm-init in either mode), and in native mode every app init container
// (fsm-init and the proxy start before them). In FSM's mode the app's other
// init containers run before fsm-init, with no rule and no proxy.
type appBesideProxy struct {
	c    *corev1.Container
	path *field.Path
}

func appContainersBesideProxy(pod *corev1.Pod, native bool) []appBesideProxy {
	var out []appBesideProxy
	for i := range pod.Spec.InitContainers {
		c := &pod.Spec.InitContainers[i]
		if native || (c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways) {
			out = append(out, appBesideProxy{c, field.NewPath("spec", "initContainers").Index(i)})
		}
	}
	for i := range pod.Spec.Containers {
		out = append(out, appBesideProxy{&pod.Spec.Containers[i], field.NewPath("spec", "containers").Index(i)})
	}
	return out
}

// proxyUIDWarnings warns of the app containers that run as the proxy's
// user (their own securityContext.runAsUser, else the pod's), one warning
// per field that sets it: fsm-init's rules RETURN every outbound connection
// of that uid (`-m owner --uid-owner 1500 -j RETURN`, the proxy's own
// upstream traffic), so their connections leave the pod past the proxy: no
// mTLS, no egress or access policy, and a meshed peer expecting mTLS
// refuses them. The rules match the uid only, never a group, so runAsGroup
// and fsGroup do not matter. Why, at length: README "Admission warnings".
func proxyUIDWarnings(pod *corev1.Pod, apps []appBesideProxy) []string {
	var fields []string
	var names map[string][]string
	for _, a := range apps {
		uid, from := runAsUser(pod, a)
		if uid == nil || *uid != ProxyUID {
			continue
		}
		if names == nil {
			names = map[string][]string{}
		}
		if names[from] == nil {
			fields = append(fields, from)
		}
		names[from] = append(names[from], fmt.Sprintf("%q", a.c.Name))
	}
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		out = append(out, fitWarning(fmt.Sprintf("%s %d is the proxy's uid: traffic of %s bypasses the mesh; use another uid",
			f, ProxyUID, containersNamed(names[f])), warnProxyUID))
	}
	return out
}

// containersNamed is `container "a"` or `containers "a", "b"`, within a
// budget that keeps the warning short.
func containersNamed(quoted []string) string {
	if len(quoted) == 1 {
		return "container " + quoted[0]
	}
	return "containers " + warning.List(quoted, 80)
}

// runAsUser is the uid a container runs as, and the field that sets it; nil
// when neither the container nor the pod sets one (the image's user, which
// admission cannot see).
func runAsUser(pod *corev1.Pod, a appBesideProxy) (*int64, string) {
	if sc := a.c.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser, a.path.Child("securityContext", "runAsUser").String()
	}
	if sc := pod.Spec.SecurityContext; sc != nil && sc.RunAsUser != nil {
		return sc.RunAsUser, "spec.securityContext.runAsUser"
	}
	return nil, ""
}

// injectedPort is a port the injected containers listen on (whose: README
// "Admission warnings", port-collision),
// or, with bypass, one fsm-init leaves out of inbound interception that
// none of them listens on in this pod.
type injectedPort struct {
	port     int32
	protocol corev1.Protocol
	bypass   bool
}

// injectedPorts are the ports of the pod's injected containers: the listeners
// of FSM v1.5.1's sidecar codebase (main.js: 15001, 15003, 15010, 15000, a
// health port when the first container's probe of its kind is plain HTTP,
// 127.0.0.153:5300/udp with the local DNS proxy), Pipy's admin port
// (--admin-port, the MeshConfig's repoServer.port, bound on [::]),
// fsm-healthcheck's, and the health ports fsm-init RETURNs inbound
// (iptables inboundReturnPorts) that nothing listens on here.
func injectedPorts(repoServerPort int, httpKinds map[string]bool, healthcheck, localDNS bool) []injectedPort {
	ports := []injectedPort{
		{port: ProxyAdminPort},        // stats
		{port: ProxyOutboundPort},     // outbound
		{port: ProxyInboundPort},      // inbound
		{port: ProxyMetricsPort},      // metrics
		{port: int32(repoServerPort)}, // Pipy's --admin-port
	}
	for _, p := range []struct {
		kind string
		port int32
	}{{probeLiveness, LivenessProbePort}, {probeReadiness, ReadinessProbePort}, {probeStartup, StartupProbePort}} {
		ports = append(ports, injectedPort{port: p.port, bypass: !httpKinds[p.kind]})
	}
	ports = append(ports, injectedPort{port: HealthcheckPort, bypass: !healthcheck})
	if localDNS {
		ports = append(ports, injectedPort{port: 5300, protocol: corev1.ProtocolUDP}) // 127.0.0.153:5300
	}
	return ports
}

// portWarnings warns of each port an app container declares that an
// injected container listens on (the containers share the pod's network:
// whichever starts second cannot listen, and the app or the proxy fails, at
// each restart), or that fsm-init leaves out of inbound interception
// (connections to it reach the app past the proxy: no mTLS, no access
// policy). Only declared ports: the app may listen on others, which
// admission cannot see. A hostPort maps the node's port onto the
// containerPort, which is what collides.
func portWarnings(apps []appBesideProxy, injected []injectedPort) []string {
	var out []string
	for _, a := range apps {
		var listened, bypassed []string
		for _, p := range a.c.Ports {
			proto := p.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			i := slices.IndexFunc(injected, func(ip injectedPort) bool {
				want := ip.protocol
				if want == "" {
					want = corev1.ProtocolTCP
				}
				return ip.port == p.ContainerPort && want == proto
			})
			switch {
			case i < 0:
			case injected[i].bypass:
				bypassed = append(bypassed, fmt.Sprintf("%d/%s", p.ContainerPort, proto))
			default:
				listened = append(listened, fmt.Sprintf("%d/%s", p.ContainerPort, proto))
			}
		}
		if len(listened)+len(bypassed) == 0 {
			continue
		}
		at := a.path.Child("ports")
		if len(listened) > 0 {
			out = append(out, fitWarning(fmt.Sprintf("container %q %s: the injected containers listen on %s; use other ports",
				a.c.Name, at, warning.List(listened, 60)), warnPortCollision))
		}
		if len(bypassed) > 0 {
			out = append(out, fitWarning(fmt.Sprintf("container %q %s: %s does not intercept health port %s; use other ports",
				a.c.Name, at, InitContainerName, warning.List(bypassed, 60)), warnHealthPort))
		}
	}
	return out
}

// metricsAnnotationsWarning warns when the namespace's flomesh.io/metrics
// replaces scrape annotations the pod set to other values (as FSM v1.5.1
// replaces them): the app's own metrics, which they pointed at, are no
// longer scraped, or a pod that opted out now is (its port and path
// pointed at nothing scraped, so that is all it is told).
func metricsAnnotationsWarning(podAnn map[string]string, enabled bool) string {
	if !enabled {
		return ""
	}
	set := map[string]string{
		prometheusScrapeAnnotation: "true",
		prometheusPortAnnotation:   fmt.Sprint(ProxyMetricsPort),
		prometheusPathAnnotation:   MetricsPath,
	}
	var replaced []string
	for k, v := range set {
		if old, ok := podAnn[k]; ok && old != v {
			replaced = append(replaced, fmt.Sprintf("%s %s", k, warning.Quote(old, 24)))
		}
	}
	if len(replaced) == 0 {
		return ""
	}
	sort.Strings(replaced)
	so := "the app's own metrics are no longer scraped"
	if old, ok := podAnn[prometheusScrapeAnnotation]; ok && old != "true" {
		so = fmt.Sprintf("the pod is scraped; to keep it unscraped annotate %s: disabled", SidecarInjectionAnnotation)
	}
	return fitWarning(fmt.Sprintf("namespace annotation %s replaced %s: %s",
		MetricsAnnotation, strings.Join(replaced, ", "), so), warnScrapeAnnotations)
}

// localDNSWarning warns when MeshConfig spec.sidecar.localDNSProxy.enable
// replaces the pod's own DNS settings (dnsPolicy other than the default
// ClusterFirst, or a dnsConfig), as FSM v1.5.1 replaces them: the pod then
// resolves through fsm-controller only, with none of its own nameservers,
// searches or options.
func localDNSWarning(pod *corev1.Pod, localDNS bool) string {
	if !localDNS {
		return ""
	}
	var own []string
	if p := pod.Spec.DNSPolicy; p != "" && p != corev1.DNSClusterFirst {
		own = append(own, fmt.Sprintf("spec.dnsPolicy %q", p))
	}
	if pod.Spec.DNSConfig != nil {
		own = append(own, "spec.dnsConfig")
	}
	if len(own) == 0 {
		return ""
	}
	return fitWarning(fmt.Sprintf("%s replaced by MeshConfig localDNSProxy (%s only); to keep them, annotate %s: disabled",
		strings.Join(own, ", "), ControllerServiceName, SidecarInjectionAnnotation), warnLocalDNS)
}
