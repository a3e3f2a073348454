// Package iptables builds the iptables-restore rule set the fsm-init container
// applies to redirect a pod's traffic through the Pipy sidecar, and parses the
// exclusion/inclusion lists that shape it. Everything here is pure.
package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
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

// Config is the rule set's input. Lists are already validated (see ParsePorts
// and ParseCIDRs).
type Config struct {
	OutboundPortExclusions []int
	InboundPortExclusions  []int
	// OutboundIPRangeExclusions and OutboundIPRangeInclusions are IPv4 CIDRs.
	OutboundIPRangeExclusions  []string
	OutboundIPRangeInclusions  []string
	NetworkInterfaceExclusions []string
	// LocalProxyPodIP DNATs the proxy's loopback traffic to $POD_IP
	// (MeshConfig sidecar.localProxyMode PodIP).
	LocalProxyPodIP bool
}

// Rules returns the nat-table rule set in iptables-restore format.
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
		w("-A OUTPUT -p tcp -o lo -d 127.0.0.1/32 -m owner --uid-owner %d -j DNAT --to-destination $POD_IP", ProxyUID)
	}
	for _, ifc := range c.NetworkInterfaceExclusions {
		w("-A %s -o %s -j RETURN", OutboundChain, ifc)
	}
	// The proxy talking to the app on the pod's own address goes inbound.
	w("-A %s -o lo ! -d 127.0.0.1/32 -m owner --uid-owner %d -j %s", OutboundChain, ProxyUID, InboundRedirectChain)
	w("-A %s -o lo -m owner ! --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -m owner --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -d 127.0.0.1/32 -j RETURN", OutboundChain)
	for _, group := range multiport(c.OutboundPortExclusions) {
		w("-A %s -p tcp --match multiport --dports %s -j RETURN", OutboundChain, group)
	}
	for _, cidr := range c.OutboundIPRangeExclusions {
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

// Script is the fsm-init shell argument that applies the rules.
func Script(c Config) string {
	return "iptables-restore --noflush <<EOF\n" + Rules(c) + "EOF\n"
}

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

// ParseCIDRs parses a comma-separated list of IPv4 CIDRs from the annotation
// key. IPv6 ranges are refused: the rule set is IPv4 only, and putting them in
// it would make iptables-restore fail inside the pod.
func ParseCIDRs(key, value string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(value, ",") {
		v := strings.TrimSpace(raw)
		if err := checkCIDR(v); err != nil {
			return nil, fmt.Errorf("Invalid IP range '%s' specified for annotation '%s'%s", v, key, err.Error()) //nolint:staticcheck // FSM's message
		}
		out = append(out, v)
	}
	return out, nil
}

// CheckCIDR validates one IPv4 CIDR (for MeshConfig lists).
func CheckCIDR(v string) error {
	if err := checkCIDR(v); err != nil {
		return fmt.Errorf("invalid IP range %q%s", v, err.Error())
	}
	return nil
}

// checkCIDR returns "" -style suffix errors: nil when valid.
func checkCIDR(v string) error {
	p, err := netip.ParsePrefix(v)
	if err != nil {
		return suffixError("")
	}
	if !p.Addr().Is4() {
		return suffixError(": IPv6 ranges are not supported")
	}
	return nil
}

type suffixError string

func (e suffixError) Error() string { return string(e) }

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

// CheckInterface validates a network interface name. Names end up inside a
// shell here-document, so only the characters Linux interface names use are
// accepted.
func CheckInterface(name string) error {
	if name == "" || len(name) > 15 {
		return fmt.Errorf("invalid network interface name %q: must be 1-15 characters", name)
	}
	for _, r := range name {
		if !interfaceRune(r) {
			return fmt.Errorf("invalid network interface name %q: character %q not allowed", name, r)
		}
	}
	return nil
}

func interfaceRune(r rune) bool {
	switch {
	case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		return true
	}
	return strings.ContainsRune("._-@", r)
}
