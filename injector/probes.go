package injector

import (
	"cmp"
	"errors"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/internal/warning"
)

// Probe kinds, as keys of the bootstrap config's OriginalHealthProbes.
const (
	probeLiveness  = "liveness"
	probeReadiness = "readiness"
	probeStartup   = "startup"
)

// Headers the sidecar and the healthcheck container read to reach the
// original probe target.
const (
	originalHTTPPortHeader = "Original-Http-Port"
	originalHTTPPathHeader = "Original-Http-Path"
	originalTCPPortHeader  = "Original-Tcp-Port"
)

// HealthProbe is an app probe as it was before rewriting (FSM's bootstrap
// format: every field present, Timeout the probe's timeoutSeconds as given,
// which the apiserver has defaulted to 1 s before admission).
type HealthProbe struct {
	Path        string        `json:"path"`
	Port        int32         `json:"port"`
	IsHTTP      bool          `json:"isHTTP"`
	IsTCPSocket bool          `json:"isTCPSocket"`
	Timeout     time.Duration `json:"timeout"`
}

// probeResult is what rewriting a pod's probes produced.
type probeResult struct {
	// original[container][kind]
	original map[string]map[string]HealthProbe
	// httpKinds are the kinds rewritten to a sidecar health port.
	httpKinds map[string]bool
	// needHealthcheck is true when a TCP or HTTPS probe needs the
	// fsm-healthcheck container.
	needHealthcheck bool
	// warnings are for the user: probes admitted as FSM admitted them
	// whose target is doubtful (errNoPort).
	warnings []string
}

// probedContainers are the containers whose probes are rewritten: the
// app's regular containers. Not its native sidecars (restartable init
// containers), in native mode either: the proxy's health ports forward to the
// target FSM's controller configures from the pod's regular containers only,
// so a rewritten native sidecar's probe would reach an app container's target
// or nothing. The pointers are into pod's slices: use them before
// containers are added.
func probedContainers(pod *corev1.Pod) []*corev1.Container {
	out := make([]*corev1.Container, 0, len(pod.Spec.Containers))
	for i := range pod.Spec.Containers {
		out = append(out, &pod.Spec.Containers[i])
	}
	return out
}

// rewriteProbes points the HTTP, HTTPS and TCP probes of containers at the
// sidecar's health ports (or the healthcheck container), in place. Every
// container's probe keeps its own original port and path in headers.
//
// The sidecar listens on a kind's health port only when the first probe of
// that kind in the pod (FSM's controller copies them in container order;
// Pipy's main.js reads [0]) is an HTTP probe sent there, and answers from
// that probe's target. So an HTTP probe whose kind's first probe is not
// (exec, gRPC, HTTPS or TCP) would find nothing listening and fail for
// ever, as under FSM: it is sent to the healthcheck container instead, a
// TCP check of its own port.
func rewriteProbes(containers []*corev1.Container) (probeResult, error) {
	res := probeResult{original: map[string]map[string]HealthProbe{}, httpKinds: map[string]bool{}}
	served := proxyServedKinds(containers)
	for i, c := range containers {
		at := field.NewPath("spec", "containers").Index(i)
		for _, p := range []struct {
			kind  string
			probe *corev1.Probe
			port  int32
		}{
			{probeLiveness, c.LivenessProbe, LivenessProbePort},
			{probeReadiness, c.ReadinessProbe, ReadinessProbePort},
			{probeStartup, c.StartupProbe, StartupProbePort},
		} {
			if p.probe == nil {
				continue
			}
			if hg := p.probe.HTTPGet; hg != nil && hg.Port.Type == intstr.Int && hg.Port.IntVal == 0 {
				res.warnings = append(res.warnings, fitWarning(fmt.Sprintf("container %q %s: unset, so probed on port %d; set it",
					c.Name, at.Child(p.kind+"Probe", "httpGet", "port"), defaultProbePort(hg.Scheme)), warnProbePort))
			}
			if hg := p.probe.HTTPGet; hg != nil && hg.Scheme != "" && hg.Scheme != corev1.URISchemeHTTP && hg.Scheme != corev1.URISchemeHTTPS {
				// The apiserver refuses such a pod unmeshed (its scheme is
				// HTTP or HTTPS, case-sensitive), but stores the rewritten
				// probe, whose scheme is HTTP: "https" reaches an HTTPS app
				// as plain HTTP and fails for ever. FSM v1.5.1 rewrites it
				// so, and an HTTP app passes it: admitted, with a warning.
				res.warnings = append(res.warnings, fitWarning(fmt.Sprintf("container %q %s: %s is not HTTP or HTTPS, so probed as HTTP; fix it",
					c.Name, at.Child(p.kind+"Probe", "httpGet", "scheme"), warning.Quote(string(hg.Scheme), 24)), warnProbeScheme))
			}
			orig, to, err := rewriteProbe(c, p.kind, p.probe, p.port, served[p.kind])
			if err != nil {
				return probeResult{}, err
			}
			if to == toNothing {
				continue
			}
			if res.original[c.Name] == nil {
				res.original[c.Name] = map[string]HealthProbe{}
			}
			res.original[c.Name][p.kind] = orig
			if to == toProxy {
				res.httpKinds[p.kind] = true
			} else {
				res.needHealthcheck = true
			}
		}
	}
	return res, nil
}

// proxyServedKinds are the probe kinds whose first probe in containers is
// a plain HTTP one: the kinds the sidecar will listen for.
func proxyServedKinds(containers []*corev1.Container) map[string]bool {
	served := map[string]bool{}
	seen := map[string]bool{}
	for _, c := range containers {
		for kind, p := range map[string]*corev1.Probe{probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe, probeStartup: c.StartupProbe} {
			if p == nil || seen[kind] {
				continue
			}
			seen[kind] = true
			served[kind] = p.HTTPGet != nil && p.HTTPGet.Scheme != corev1.URISchemeHTTPS
		}
	}
	return served
}

// Where rewriteProbe sent a probe.
type probeTarget int

const (
	toNothing     probeTarget = iota // left as written (exec, gRPC)
	toProxy                          // the sidecar's health port of its kind
	toHealthcheck                    // the healthcheck container, a TCP check
)

// rewriteProbe rewrites p in place; viaProxy says whether the sidecar
// serves its kind's health port (see rewriteProbes).
func rewriteProbe(c *corev1.Container, kind string, p *corev1.Probe, healthPort int32, viaProxy bool) (HealthProbe, probeTarget, error) {
	timeout := time.Duration(p.TimeoutSeconds) * time.Second
	switch {
	case p.HTTPGet != nil:
		port, err := resolvePort(c, p.HTTPGet.Port)
		if err != nil && !errors.Is(err, errNoNamedPort) && !errors.Is(err, errNoPort) {
			return HealthProbe{}, toNothing, fmt.Errorf("container %q %s probe: %w", c.Name, kind, err)
		}
		if p.HTTPGet.Scheme == corev1.URISchemeHTTPS {
			path := p.HTTPGet.Path
			p.HTTPGet = tcpHealthcheck(cmp.Or(port, 443))
			return HealthProbe{Path: path, Port: port, IsTCPSocket: true, Timeout: timeout}, toHealthcheck, nil
		}
		if !viaProxy {
			path := p.HTTPGet.Path
			p.HTTPGet = tcpHealthcheck(cmp.Or(port, 80))
			return HealthProbe{Path: path, Port: port, IsTCPSocket: true, Timeout: timeout}, toHealthcheck, nil
		}
		orig := HealthProbe{Path: p.HTTPGet.Path, Port: port, IsHTTP: true, Timeout: timeout}
		headers := append([]corev1.HTTPHeader(nil), p.HTTPGet.HTTPHeaders...)
		headers = append(headers,
			corev1.HTTPHeader{Name: originalHTTPPortHeader, Value: strconv.Itoa(int(cmp.Or(port, 80)))},
			corev1.HTTPHeader{Name: originalHTTPPathHeader, Value: p.HTTPGet.Path},
		)
		p.HTTPGet = &corev1.HTTPGetAction{
			Path:        HealthcheckPath,
			Port:        intstr.FromInt32(healthPort),
			Host:        p.HTTPGet.Host,
			Scheme:      corev1.URISchemeHTTP,
			HTTPHeaders: headers,
		}
		return orig, toProxy, nil
	case p.TCPSocket != nil:
		port, err := resolvePort(c, p.TCPSocket.Port)
		if err != nil && !errors.Is(err, errNoNamedPort) {
			return HealthProbe{}, toNothing, fmt.Errorf("container %q %s probe: %w", c.Name, kind, err)
		}
		p.TCPSocket = nil
		p.HTTPGet = tcpHealthcheck(port)
		return HealthProbe{Port: port, IsTCPSocket: true, Timeout: timeout}, toHealthcheck, nil
	}
	// gRPC and exec probes do not go through the proxy's redirection.
	return HealthProbe{}, toNothing, nil
}

func tcpHealthcheck(port int32) *corev1.HTTPGetAction {
	return &corev1.HTTPGetAction{
		Path:   HealthcheckPath,
		Port:   intstr.FromInt32(HealthcheckPort),
		Scheme: corev1.URISchemeHTTP,
		HTTPHeaders: []corev1.HTTPHeader{
			{Name: originalTCPPortHeader, Value: strconv.Itoa(int(port))},
		},
	}
}

// errNoNamedPort: a probe names a port its container does not declare. The
// apiserver stores such a pod (it checks only the name's form), and FSM
// v1.5.1 injects it, logging the error (pkg/injector/health_probes.go):
// the original port is 0, and the headers the proxy reads say 80 for an
// HTTP probe, 443 for HTTPS and 0 for TCP. So do we, rather than refuse
// the pods of a workload FSM ran.
var errNoNamedPort = errors.New("named port not found in the container's ports")

// errNoPort: a probe without a port (port 0: `httpGet: {path: /healthz}`).
// The apiserver refuses such a pod unmeshed, but stores it once its probe
// points at a health port: FSM v1.5.1 injects an HTTP or HTTPS one as it
// does an undeclared named port (original port 0; 80 or 443 in the
// headers), and an app on that port passes it. So do we, with a warning.
// A TCP probe without a port is still refused: FSM's healthcheck dialled
// port 0 and the probe never passed.
var errNoPort = errors.New("port 0 out of range 1-65535")

// defaultProbePort is where an HTTP(S) probe without a resolved port is
// sent, as FSM sends it.
func defaultProbePort(scheme corev1.URIScheme) int32 {
	if scheme == corev1.URISchemeHTTPS {
		return 443
	}
	return 80
}

// resolvePort turns a probe port (number or container port name) into a
// number; 0 and errNoNamedPort for a name the container does not declare,
// 0 and errNoPort for port 0.
func resolvePort(c *corev1.Container, port intstr.IntOrString) (int32, error) {
	if port.Type == intstr.Int {
		if port.IntVal == 0 {
			return 0, errNoPort
		}
		if port.IntVal < 1 || port.IntVal > 65535 {
			return 0, fmt.Errorf("port %d out of range 1-65535", port.IntVal)
		}
		return port.IntVal, nil
	}
	if n := portNumber(port.StrVal); n != 0 {
		return n, nil
	}
	for _, cp := range c.Ports {
		if cp.Name == port.StrVal {
			return cp.ContainerPort, nil
		}
	}
	return 0, fmt.Errorf("%q: %w", port.StrVal, errNoNamedPort)
}

// portNumber is the TCP port a decimal string names (an original-port
// header, a probe port given as a string), 0 when it names
// none. Whoever wrote the pod wrote the header: a number past int32 must not
// wrap onto a real port (2^32+80 is not 80).
func portNumber(v string) int32 {
	n, err := strconv.ParseInt(v, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0
	}
	return int32(n)
}

// recoverOriginalProbes reads back what rewriteProbes recorded in headers, for
// a copy of an already injected pod.
func recoverOriginalProbes(containers []*corev1.Container) map[string]map[string]HealthProbe {
	out := map[string]map[string]HealthProbe{}
	for _, c := range containers {
		for kind, p := range map[string]*corev1.Probe{probeLiveness: c.LivenessProbe, probeReadiness: c.ReadinessProbe, probeStartup: c.StartupProbe} {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != HealthcheckPath {
				continue
			}
			hp := HealthProbe{Timeout: time.Duration(p.TimeoutSeconds) * time.Second}
			for _, h := range p.HTTPGet.HTTPHeaders {
				switch h.Name {
				case originalHTTPPortHeader:
					hp.Port, hp.IsHTTP = portNumber(h.Value), true
				case originalHTTPPathHeader:
					hp.Path = h.Value
				case originalTCPPortHeader:
					hp.Port, hp.IsTCPSocket = portNumber(h.Value), true
				}
			}
			if hp.Port == 0 {
				continue
			}
			if out[c.Name] == nil {
				out[c.Name] = map[string]HealthProbe{}
			}
			out[c.Name][kind] = hp
		}
	}
	return out
}
