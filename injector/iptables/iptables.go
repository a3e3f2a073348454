// Package iptables builds the iptables-restore (and, when an IPv6 range is
// configured, ip6tables-restore) rule sets the fsm-init container applies to
// redirect a pod's traffic through the Pipy sidecar, and parses the
// exclusion/inclusion annotations that shape them. Everything here is pure.
package iptables

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

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

// Config is the rule set's input. Lists are already validated (see ParsePorts
// and ParseCIDRs, and package meshconfig/rules for MeshConfig's).
type Config struct {
	OutboundPortExclusions []int
	InboundPortExclusions  []int
	// OutboundIPRangeExclusions and OutboundIPRangeInclusions are IPv4 and
	// IPv6 CIDRs; each goes to the rule set of its family.
	OutboundIPRangeExclusions  []string
	OutboundIPRangeInclusions  []string
	NetworkInterfaceExclusions []string
	// LocalProxyPodIP DNATs the proxy's loopback traffic to $POD_IP
	// (MeshConfig sidecar.localProxyMode PodIP).
	LocalProxyPodIP bool
}

// family is what differs between the iptables and ip6tables rule sets.
type family struct {
	ipv6     bool
	loopback string
}

var (
	ipv4 = family{ipv6: false, loopback: "127.0.0.1/32"}
	ipv6 = family{ipv6: true, loopback: "::1/128"}
)

// of keeps the ranges of f's family, in order.
func (f family) of(cidrs []string) []string {
	var out []string
	for _, c := range cidrs {
		if isIPv6(c) == f.ipv6 {
			out = append(out, c)
		}
	}
	return out
}

// isIPv6 tells an IPv6 CIDR (IPv4-mapped ones included: ip6tables matches
// them) from an IPv4 one; anything unparsable counts as IPv4, where
// iptables-restore reports it.
func isIPv6(cidr string) bool {
	p, err := netip.ParsePrefix(cidr)
	return err == nil && p.Addr().Is6()
}

// HasIPv6 reports whether c names an IPv6 range, so the pod needs the
// ip6tables rule set too.
func HasIPv6(c Config) bool {
	return slices.ContainsFunc(c.OutboundIPRangeExclusions, isIPv6) || slices.ContainsFunc(c.OutboundIPRangeInclusions, isIPv6)
}

// Rules returns the IPv4 nat-table rule set in iptables-restore format. It
// holds the IPv4 ranges only.
func Rules(c Config) string { return ruleSet(c, ipv4) }

// Rules6 returns the IPv6 nat-table rule set in ip6tables-restore format:
// the same chains and rules as Rules, with ::1/128 as the loopback range and
// the IPv6 ranges only. The PodIP-mode DNAT stays IPv4-only: $POD_IP is the
// pod's primary address.
func Rules6(c Config) string { return ruleSet(c, ipv6) }

func ruleSet(c Config, f family) string {
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
	if c.LocalProxyPodIP && !f.ipv6 {
		w("-A OUTPUT -p tcp -o lo -d %s -m owner --uid-owner %d -j DNAT --to-destination $POD_IP", f.loopback, ProxyUID)
	}
	for _, ifc := range c.NetworkInterfaceExclusions {
		w("-A %s -o %s -j RETURN", OutboundChain, ifc)
	}
	// The proxy talking to the app on the pod's own address goes inbound.
	w("-A %s -o lo ! -d %s -m owner --uid-owner %d -j %s", OutboundChain, f.loopback, ProxyUID, InboundRedirectChain)
	w("-A %s -o lo -m owner ! --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -m owner --uid-owner %d -j RETURN", OutboundChain, ProxyUID)
	w("-A %s -d %s -j RETURN", OutboundChain, f.loopback)
	for _, group := range multiport(c.OutboundPortExclusions) {
		w("-A %s -p tcp --match multiport --dports %s -j RETURN", OutboundChain, group)
	}
	for _, cidr := range f.of(c.OutboundIPRangeExclusions) {
		w("-A %s -d %s -j RETURN", OutboundChain, cidr)
	}
	// An inclusion list in either family means "only these ranges": a family
	// without an entry of its own then intercepts nothing.
	if len(c.OutboundIPRangeInclusions) > 0 {
		for _, cidr := range f.of(c.OutboundIPRangeInclusions) {
			w("-A %s -d %s -j %s", OutboundChain, cidr, OutboundRedirectChain)
		}
	} else {
		w("-A %s -j %s", OutboundChain, OutboundRedirectChain)
	}
	w("COMMIT")
	return b.String()
}

// Script is the fsm-init shell argument that applies the rules. Without an
// IPv6 range it is the IPv4 rule set alone, as FSM applies it. With one, the
// ip6tables rule set follows and the script stops at the first failure, so
// the init container fails (and the pod does not start unprotected) if
// either family cannot be set up.
func Script(c Config) string {
	v4 := "iptables-restore --noflush <<EOF\n" + Rules(c) + "EOF\n"
	if !HasIPv6(c) {
		return v4
	}
	return "set -e\n" + v4 + "ip6tables-restore --noflush <<EOF\n" + Rules6(c) + "EOF\n"
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

// ParseCIDRs parses a comma-separated list of IPv4 and IPv6 CIDRs from the
// annotation key, with the rule MeshConfig's lists follow
// (rules.IPRange); each range goes to the rule set of its family.
func ParseCIDRs(key, value string) ([]string, error) {
	var out []string
	for _, raw := range strings.Split(value, ",") {
		v := strings.TrimSpace(raw)
		if _, errs := rules.IPRange(nil, v); len(errs) > 0 {
			return nil, fmt.Errorf("Invalid IP range '%s' specified for annotation '%s'", v, key) //nolint:staticcheck // FSM's message
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
