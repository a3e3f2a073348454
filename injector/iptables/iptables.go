// Package iptables builds the iptables-restore rule set the fsm-init container
// applies to redirect a pod's IPv4 traffic through the Pipy sidecar, and
// parses the exclusion/inclusion annotations that shape it. IPv6 traffic is
// never intercepted (see rules.IPv6NotIntercepted). Everything here is pure.
package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// Chains and ports of the FSM rule set.
const (
	InboundChain          = "FSM_PROXY_INBOUND"
	InboundRedirectChain  = "FSM_PROXY_IN_REDIRECT"
	OutboundChain         = "FSM_PROXY_OUTBOUND"
	OutboundRedirectChain = "FSM_PROXY_OUT_REDIRECT"

	InboundProxyPort  = 15003
	OutboundProxyPort = 15001
	ProxyUID          = 1500

	// maxMultiport is the kernel's limit of ports in one multiport match.
	maxMultiport = 15
)

// inboundReturnPorts are the sidecar's own ports that must reach it directly:
// metrics and the health probe ports.
var inboundReturnPorts = []int{15010, 15901, 15902, 15903, 15904}

// Config is the rule set's input. Lists are already validated (see ParsePorts,
// ParseExclusionCIDRs and ParseInclusionCIDRs, and package meshconfig/rules
// for MeshConfig's).
type Config struct {
	OutboundPortExclusions []int
	InboundPortExclusions  []int
	// OutboundIPRangeExclusions are IPv4 and IPv6 CIDRs. Only the IPv4 ones
	// reach the rules: IPv6 traffic is never intercepted, so an IPv6
	// exclusion is already true and changes nothing.
	OutboundIPRangeExclusions []string
	// OutboundIPRangeInclusions are IPv4 CIDRs (rules.InterceptedIPRange).
	OutboundIPRangeInclusions  []string
	NetworkInterfaceExclusions []string
	// LocalProxyPodIP DNATs the proxy's loopback traffic to $POD_IP
	// (MeshConfig sidecar.localProxyMode PodIP).
	LocalProxyPodIP bool
}

// ipv4 keeps the IPv4 CIDRs of cidrs, in order. Anything unparsable is kept
// too, for iptables-restore to report: the lists are validated before.
func ipv4(cidrs []string) []string {
	var out []string
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err != nil || p.Addr().Is4() {
			out = append(out, c)
		}
	}
	return out
}

// Rules returns the nat-table rule set in iptables-restore format. The mesh
// intercepts IPv4 only, as FSM does (the sidecar listens on IPv4 only, see
// rules.IPv6NotIntercepted), so there is no ip6tables counterpart.
func Rules(c Config) string {
	var b strings.Builder
	w := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteByte('\n')
	}
	w("*nat")
	for _, ch := range []string{InboundChain, InboundRedirectChain, OutboundChain, OutboundRedirectChain} {
		w(":%s - [0:0]", ch)
	}

	// Inbound.
	w("-A %s -p tcp -j REDIRECT --to-port %d", InboundRedirectChain, InboundProxyPort)
	w("-A PREROUTING -p tcp -j %s", InboundChain)
	for _, ifc := range c.NetworkInterfaceExclusions {
		w("-A %s -i %s -j RETURN", InboundChain, ifc)
	}
	for _, p := range inboundReturnPorts {
		w("-A %s -p tcp --dport %d -j RETURN", InboundChain, p)
	}
	for _, group := range multiport(c.InboundPortExclusions) {
		w("-A %s -p tcp --match multiport --dports %s -j RETURN", InboundChain, group)
	}
	w("-A %s -p tcp -j %s", InboundChain, InboundRedirectChain)

	// Outbound.
	w("-A %s -p tcp -j REDIRECT --to-port %d", OutboundRedirectChain, OutboundProxyPort)
	w("-A OUTPUT -p tcp -j %s", OutboundChain)
	if c.LocalProxyPodIP {
		// FSM's rule, written only when podIPv4Script found an IPv4
		// address (an empty line is skipped by iptables-restore).
		w("${POD_IP:+-A OUTPUT -p tcp -o lo -d 127.0.0.1/32 -m owner --uid-owner %d -j DNAT --to-destination $POD_IP}", ProxyUID)
	}
	// The proxy talking to the app on the pod's own address goes inbound.
	w("-A %s -o lo ! -d 127.0.0.1/32 -m owner --uid-owner %d -j %s", OutboundChain, ProxyUID, InboundRedirectChain)
	w("-A %s -o lo -m owner ! --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -m owner --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -d 127.0.0.1/32 -j RETURN", OutboundChain)
	// After the loopback rules, as FSM orders them: an excluded lo must not
	// keep the proxy's own traffic to the pod IP from its inbound listener.
	for _, ifc := range c.NetworkInterfaceExclusions {
		w("-A %s -o %s -j RETURN", OutboundChain, ifc)
	}
	for _, group := range multiport(c.OutboundPortExclusions) {
		w("-A %s -p tcp --match multiport --dports %s -j RETURN", OutboundChain, group)
	}
	for _, cidr := range ipv4(c.OutboundIPRangeExclusions) {
		w("-A %s -d %s -j RETURN", OutboundChain, cidr)
	}
	if len(c.OutboundIPRangeInclusions) > 0 {
		for _, cidr := range c.OutboundIPRangeInclusions {
			w("-A %s -d %s -j %s", OutboundChain, cidr, OutboundRedirectChain)
		}
	} else {
		w("-A %s -j %s", OutboundChain, OutboundRedirectChain)
	}
	w("COMMIT")
	return b.String()
}

// Script is the fsm-init shell argument that applies the rules, as FSM
// applies them.
func Script(c Config) string {
	s := "iptables-restore --noflush <<EOF\n" + Rules(c) + "EOF\n"
	if c.LocalProxyPodIP {
		s = podIPv4Script + s
	}
	return s
}

// PodIPsEnv is the fsm-init variable holding status.podIPs (every family's
// address, comma-separated) in localProxyMode PodIP; POD_IP is
// status.podIP, the first of them.
const PodIPsEnv = "POD_IPS"

// podIPv4Script sets POD_IP to the pod's IPv4 address, or empty when it has
// none, for the PodIP DNAT: an iptables (IPv4) rule, which iptables-restore
// refuses with an IPv6 address, failing the whole rule set, so a pod whose
// status.podIP is IPv6 (IPv6-only, or dual-stack listing IPv6 first) would
// never start. The proxy's loopback traffic is IPv4, so its pod address is
// the IPv4 one; without one there is no IPv4 traffic to forward and no
// DNAT. POD_IPS unset: status.podIP, as FSM. Shell builtins only.
const podIPv4Script = `ips=${` + PodIPsEnv + `:-$POD_IP}; POD_IP=; IFS=,; for ip in $ips; do case $ip in *:*) ;; *) POD_IP=${POD_IP:-$ip} ;; esac; done; unset IFS
`

// multiport splits ports into comma lists of at most maxMultiport.
func multiport(ports []int) []string {
	var out []string
	for chunk := range slices.Chunk(ports, maxMultiport) {
		s := make([]string, len(chunk))
		for i, p := range chunk {
			s[i] = strconv.Itoa(p)
		}
		out = append(out, strings.Join(s, ","))
	}
	return out
}

// ParsePorts parses a comma-separated port list from the annotation key.
// Every entry must be a port in 1-65535; an empty list is an error too.
func ParsePorts(key, value string) ([]int, error) {
	var out []int
	for _, raw := range strings.Split(value, ",") {
		v := strings.TrimSpace(raw)
		p, err := strconv.Atoi(v)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("Invalid port value '%s' specified for annotation '%s'", v, key) //nolint:staticcheck // FSM's message
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseExclusionCIDRs parses the comma-separated IPv4 and IPv6 CIDRs of the
// exclusion annotation key with MeshConfig's rule (rules.IPRange). IPv6
// ranges are accepted and change nothing: see Config.
func ParseExclusionCIDRs(key, value string) ([]string, error) {
	return parseCIDRs(key, value, rules.IPRange)
}

// ParseInclusionCIDRs parses the comma-separated IPv4 CIDRs of the inclusion
// annotation key with MeshConfig's rule (rules.InterceptedIPRange): an IPv6
// range is refused with the reason.
func ParseInclusionCIDRs(key, value string) ([]string, error) {
	return parseCIDRs(key, value, rules.InterceptedIPRange)
}

// parseCIDRs reports an entry the rule refuses with FSM's words followed by
// the rule's reason (the CIDR to write, where one is meant).
func parseCIDRs(key, value string, rule func(*field.Path, string) (netip.Prefix, field.ErrorList)) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(value, ",") {
		v := strings.TrimSpace(raw)
		if _, errs := rule(nil, v); len(errs) > 0 {
			return nil, fmt.Errorf("Invalid IP range '%s' specified for annotation '%s': %s", v, key, errs[0].Detail) //nolint:staticcheck // FSM's message
		}
		out = append(out, v)
	}
	return out, nil
}

// Merge returns a followed by the values of b not in a, without duplicates.
func Merge[T comparable](a, b []T) []T {
	out := make([]T, 0, len(a)+len(b))
	seen := make(map[T]struct{}, len(a)+len(b))
	for _, list := range [][]T{a, b} {
		for _, v := range list {
			if _, ok := seen[v]; ok {
				continue
			}
			seen[v] = struct{}{}
			out = append(out, v)
		}
	}
	return out
}
