// Package rules holds the MeshConfig rules the sidecar injector depends on:
// every value the injector turns into part of a pod (iptables ranges, ports
// and interfaces, the bootstrap key size, sidecar log level and modes,
// container resources) is checked here, once. The validator denies a
// MeshConfig that breaks a rule; the injector checks its settings with the
// same functions before it mutates a pod. So a MeshConfig the validator
// admits never makes injection fail, and the two cannot drift apart.
//
// Each rule takes the field path the value came from and returns field errors
// naming the path, the value and what is allowed. It is pure and never panics.
package rules

import (
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Allowed values of the enum fields the injector reads.
var (
	// PipyLogLevels are the levels Pipy (1.5.12, FSM v1.5.1's sidecar)
	// takes for --log-level; debug also as debug:<topic>[+<topic>...].
	// Anything else and Pipy exits at start ("unknown log level").
	PipyLogLevels = []string{"debug", "info", "warn", "error"}
	// PipyLogTopics are the topics of debug:<topic>; an unknown one ends
	// Pipy at start too ("unknown log topic").
	PipyLogTopics = []string{"alloc", "thread", "pipeline", "dump", "listener", "inbound", "outbound", "socket",
		"files", "subproc", "tcp", "udp", "http2", "elf", "bpf", "user", "codebase"}
	// SidecarLogLevelAliases are the levels FSM's chart schema (and OSM's
	// CRD) offers that Pipy does not know, each with the Pipy level nearest
	// it (Pipy has no "off": error is its quietest). FSM passed them through
	// and every sidecar exited at start.
	SidecarLogLevelAliases = map[string]string{"trace": "debug", "warning": "warn", "critical": "error", "off": "error"}
	// InterceptionModes of spec.traffic.interceptionMode.
	InterceptionModes = []string{"NodeLevel", "PodLevel"}
	// LocalProxyModes of spec.sidecar.localProxyMode.
	LocalProxyModes = []string{"Localhost", "PodIP"}
)

// Bounds of spec.certificate.certKeyBitSize: the RSA sizes the mesh CA
// providers issue bootstrap keys in. FSM documents 2048-4096 but its CRD
// sets no bound, so this rule is the only one.
const (
	MinCertKeyBitSize = certs.MinRSAKeyBits
	MaxCertKeyBitSize = certs.MaxRSAKeyBits
)

// MinPort and MaxPort bound every TCP/UDP port field.
const (
	MinPort = 1
	MaxPort = 65535
)

// Enum checks that v is one of allowed (case-sensitive). Empty is "not set".
func Enum(p *field.Path, v string, allowed ...string) field.ErrorList {
	if v == "" {
		return nil
	}
	for _, a := range allowed {
		if v == a {
			return nil
		}
	}
	return field.ErrorList{field.NotSupported(p, v, allowed)}
}

// SidecarLogLevel checks spec.sidecar.logLevel v and returns the
// --log-level the sidecar is started with: v itself when Pipy takes it, the
// nearest Pipy level for an alias (replaced true), or errors naming what
// Pipy takes. Empty v is unset (the caller's default).
func SidecarLogLevel(p *field.Path, v string) (pipy string, replaced bool, errs field.ErrorList) {
	if v == "" || slices.Contains(PipyLogLevels, v) {
		return v, false, nil
	}
	if a, ok := SidecarLogLevelAliases[v]; ok {
		return a, true, nil
	}
	if topics, ok := strings.CutPrefix(v, "debug:"); ok {
		for _, t := range strings.Split(topics, "+") {
			if !slices.Contains(PipyLogTopics, t) {
				return "", false, field.ErrorList{field.Invalid(p, v, fmt.Sprintf("unknown Pipy log topic %q: debug:<topic>[+<topic>...] takes %s", t, strings.Join(PipyLogTopics, ", ")))}
			}
		}
		return v, false, nil
	}
	// The aliases are taken but not offered: each is replaced.
	return "", false, field.ErrorList{field.NotSupported(p, v, append(slices.Clone(PipyLogLevels), "debug:<topic>[+<topic>...]"))}
}

// Range checks lo <= v <= hi, in the apiserver's schema wording.
func Range(p *field.Path, v, lo, hi int64) field.ErrorList {
	switch {
	case v < lo:
		return field.ErrorList{field.Invalid(p, v, fmt.Sprintf("should be greater than or equal to %d", lo))}
	case v > hi:
		return field.ErrorList{field.Invalid(p, v, fmt.Sprintf("should be less than or equal to %d", hi))}
	}
	return nil
}

// Port checks one port (1-65535).
func Port(p *field.Path, v int64) field.ErrorList { return Range(p, v, MinPort, MaxPort) }

// Ports checks every element of a port list (1-65535).
func Ports(p *field.Path, vs []int64) field.ErrorList {
	var errs field.ErrorList
	for i, v := range vs {
		errs = append(errs, Port(p.Index(i), v)...)
	}
	return errs
}

// IPv6NotIntercepted is why an outbound inclusion list refuses IPv6 ranges.
// The mesh intercepts IPv4 only, as FSM does: the fsm-init script programs no
// ip6tables rules because Pipy's listen(port) binds 0.0.0.0, so the sidecar
// has no IPv6 socket to redirect to.
const IPv6NotIntercepted = "the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted"

// IPRange parses one outbound IP range: an IPv4 or IPv6 CIDR such as
// 10.0.0.0/8 or fd00::/8, without a zone or surrounding spaces. The prefix is
// returned masked. An IPv6 range only matters in an exclusion list, where it
// is accepted and changes nothing: IPv6 traffic always bypasses the sidecar.
// An IPv4-mapped range (::ffff:10.0.0.0/104) is refused: that traffic leaves
// the pod as IPv4, so the range must be written as IPv4 to mean anything.
func IPRange(p *field.Path, s string) (netip.Prefix, field.ErrorList) {
	pfx, err := netip.ParsePrefix(s)
	if err != nil || strings.TrimSpace(s) != s {
		why := "must be a CIDR such as 10.0.0.0/8 or fd00::/8"
		if r, ok := IPTablesRanges(s); ok {
			why += ", write it as " + prefixList(r)
		} else if zeroPadded(s) {
			why += ", each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)"
		}
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, why)}
	}
	if pfx.Addr().Is4In6() && pfx.Bits() >= 96 {
		v4 := netip.PrefixFrom(pfx.Addr().Unmap(), pfx.Bits()-96).Masked()
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s,
			fmt.Sprintf("is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as %s", v4))}
	}
	return pfx.Masked(), nil
}

// zeroPadded tells whether a prefix length or an IPv4 octet of s is written
// with a leading zero (IPv6 groups may have them).
func zeroPadded(s string) bool {
	addr, bits, _ := strings.Cut(strings.TrimSpace(s), "/")
	nums := []string{bits}
	if !strings.Contains(addr, ":") {
		nums = append(nums, strings.Split(addr, ".")...)
	}
	for _, n := range nums {
		if len(n) > 1 && n[0] == '0' && strings.Trim(n, "0123456789") == "" {
			return true
		}
	}
	return false
}

// IPTablesRanges reads an IPv4 range list entry written in a form iptables'
// -d takes but IPRange refuses: a bare address (a /32), an address with a
// contiguous dotted netmask (10.0.0.0/255.0.0.0 is 10.0.0.0/8), several of
// these or of CIDRs joined by commas (iptables adds a rule for each), any of
// them with spaces around it (iptables-restore splits its lines on
// whitespace). FSM v1.5.1 writes the MeshConfig's range lists into its
// iptables rules unparsed, so a mesh FSM ran may have such a value stored
// and working; the injector reads it as iptables does. Forms iptables
// refuses, or reads other than they look (its numbers are strtoul base 0: a
// zero-padded prefix length or octet is octal, /010 is /8), non-contiguous
// masks, which no CIDR states, and names iptables would resolve are not read.
func IPTablesRanges(s string) ([]netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, " \t\n\v\f\r") {
		return nil, false
	}
	var out []netip.Prefix
	for part := range strings.SplitSeq(s, ",") {
		pfx, ok := iptablesRange(part)
		if !ok {
			return nil, false
		}
		out = append(out, pfx)
	}
	return out, true
}

// iptablesRange reads one address[/mask] of IPTablesRanges.
func iptablesRange(s string) (netip.Prefix, bool) {
	addr, mask, hasMask := strings.Cut(s, "/")
	a, err := netip.ParseAddr(addr)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false
	}
	if !hasMask {
		return netip.PrefixFrom(a, 32), true
	}
	if pfx, err := netip.ParsePrefix(s); err == nil {
		return pfx.Masked(), true
	}
	m, err := netip.ParseAddr(mask)
	if err != nil || !m.Is4() {
		return netip.Prefix{}, false
	}
	b := m.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := bits.LeadingZeros32(^v)
	if v<<ones != 0 { // a one after a zero: not contiguous
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones).Masked(), true
}

// prefixList is a list of prefixes as a list entry would write them.
func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// IPRanges checks every element of an exclusion CIDR list with IPRange and
// returns the prefixes (an invalid element leaves the zero Prefix in its
// place).
func IPRanges(p *field.Path, list []string) ([]netip.Prefix, field.ErrorList) {
	return each(p, list, IPRange)
}

// InterceptedIPRange is IPRange for a range the sidecar must intercept (an
// inclusion list): IPv4 only, see IPv6NotIntercepted.
func InterceptedIPRange(p *field.Path, s string) (netip.Prefix, field.ErrorList) {
	pfx, errs := IPRange(p, s)
	if len(errs) == 0 && pfx.Addr().Is6() {
		return netip.Prefix{}, field.ErrorList{field.Invalid(p, s, IPv6NotIntercepted)}
	}
	return pfx, errs
}

func each(p *field.Path, list []string, rule func(*field.Path, string) (netip.Prefix, field.ErrorList)) ([]netip.Prefix, field.ErrorList) {
	var errs field.ErrorList
	out := make([]netip.Prefix, len(list))
	for i, s := range list {
		pfx, e := rule(p.Index(i), s)
		out[i] = pfx
		errs = append(errs, e...)
	}
	return out, errs
}

// ifNameSize is Linux's IFNAMSIZ: a name and its terminating NUL.
const ifNameSize = 16

// InterfaceName checks a network interface name as Linux does
// (dev_valid_name: 1-15 bytes, not "." or "..", no '/', ':' or whitespace).
// It also refuses the characters the fsm-init script cannot carry verbatim:
// the rules reach iptables-restore through a shell here-document, where '$',
// '`' and '\' would be expanded and quotes would be parsed, and control
// characters. iptables' trailing '+' wildcard ("veth+") is allowed.
func InterfaceName(p *field.Path, name string) field.ErrorList {
	invalid := func(why string) field.ErrorList {
		return field.ErrorList{field.Invalid(p, name, "must be a Linux network interface name (1-15 bytes, not '.' or '..', no '/', ':', whitespace, quotes, '$', '`' or '\\'): "+why)}
	}
	switch {
	case name == "":
		return invalid("empty")
	case len(name) >= ifNameSize:
		return invalid(fmt.Sprintf("%d bytes", len(name)))
	case name == "." || name == "..":
		return invalid("reserved name")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '/' || c == ':':
			return invalid(fmt.Sprintf("contains %q", c))
		case c <= ' ' || c == 0x7f:
			return invalid(fmt.Sprintf("contains the whitespace or control byte %#x", c))
		case strings.IndexByte("$`\\\"'", c) >= 0:
			return invalid(fmt.Sprintf("contains %q", c))
		}
	}
	return nil
}

// InterfaceNames checks every element of an interface list.
func InterfaceNames(p *field.Path, names []string) field.ErrorList {
	var errs field.ErrorList
	for i, n := range names {
		errs = append(errs, InterfaceName(p.Index(i), n)...)
	}
	return errs
}

// CertKeyBitSize checks an explicitly set certKeyBitSize: every RSA size
// from 2048 to 4096 bits is issued (the common ones from a key pool).
func CertKeyBitSize(p *field.Path, bits int64) field.ErrorList {
	if bits < MinCertKeyBitSize || bits > MaxCertKeyBitSize {
		return Range(p, bits, MinCertKeyBitSize, MaxCertKeyBitSize)
	}
	if _, err := certs.RSAKeyAlgorithm(int(bits)); err != nil {
		return field.ErrorList{field.Invalid(p, bits, err.Error())}
	}
	return nil
}

// RepoServerAddr checks spec.repoServer.ipaddr, the host in every sidecar's
// repo URL: empty, "localhost" (any case) or a 127.* value mean FSM's
// controller Service (as FSM reads them); otherwise an IP address or a host
// name (a DNS-1123 subdomain, any case). An IPv6 address may be in brackets
// ("[fd00::1]"): FSM writes the value unchanged into the sidecar's and its
// controller's "http://<ipaddr>:<port>/..." URLs, where that is the form
// both reach. A zone is refused: a URL must escape it (%25), and FSM's
// controller cannot parse the URL it writes with one.
func RepoServerAddr(p *field.Path, v string) field.ErrorList {
	if v == "" || strings.EqualFold(v, "localhost") || strings.HasPrefix(v, "127.") {
		return nil
	}
	if ip, ok := RepoServerIP(v); ok {
		if ip.Zone() != "" {
			return field.ErrorList{field.Invalid(p, v, "must be an IP address without a zone (%"+ip.Zone()+"): the repo URL cannot carry it")}
		}
		return nil
	}
	// A trailing dot makes the name absolute, valid in the URL FSM and we
	// write it into.
	if name := strings.TrimSuffix(v, "."); name == "" || len(validation.IsDNS1123Subdomain(strings.ToLower(name))) > 0 {
		return field.ErrorList{field.Invalid(p, v, "must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system")}
	}
	return nil
}

// RepoServerIP reads spec.repoServer.ipaddr as an IP address: bare, or an
// IPv6 address in brackets.
func RepoServerIP(v string) (netip.Addr, bool) {
	if inner, ok := strings.CutPrefix(v, "["); ok {
		inner, ok = strings.CutSuffix(inner, "]")
		ip, err := netip.ParseAddr(inner)
		return ip, ok && err == nil && ip.Is6()
	}
	ip, err := netip.ParseAddr(v)
	return ip, err == nil
}

// Image checks a container image reference ("flomesh/pipy:1.5.14",
// "registry:5000/ns/name@sha256:..."); empty is "not set".
func Image(p *field.Path, s string) field.ErrorList {
	if s == "" {
		return nil
	}
	if err := ParseNormalizedNamed(s); err != nil {
		return field.ErrorList{field.Invalid(p, s, "must be a container image reference such as flomesh/pipy:1.5.14: "+err.Error())}
	}
	return nil
}
