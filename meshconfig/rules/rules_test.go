package rules

import (
	"math"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func errText(errs field.ErrorList) string {
	if len(errs) == 0 {
		return ""
	}
	return errs.ToAggregate().Error()
}

func TestRules(t *testing.T) {
	p := field.NewPath("f")
	iprange := func(s string) field.ErrorList { _, e := IPRange(p, s); return e }
	intercepted := func(s string) field.ErrorList { _, e := InterceptedIPRange(p, s); return e }
	const ifWant = `f: Invalid value: %q: must be a Linux network interface name (1-15 bytes, not '.' or '..', no '/', ':', whitespace, quotes, '$', '` + "`" + `' or '\'): `
	for _, tc := range []struct {
		name string
		errs field.ErrorList
		want string // "" = valid
	}{
		{"image short", Image(p, "busybox"), ""},
		{"image digest", Image(p, "ghcr.io/a/b@sha256:"+strings.Repeat("0", 64)), ""},
		{"image bad", Image(p, "a b"), `f: Invalid value: "a b": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`},
		{"image trailing space", Image(p, "flomesh/pipy:1.5.12 "), `f: Invalid value: "flomesh/pipy:1.5.12 ": must be a container image reference such as flomesh/pipy:1.5.14: invalid reference format`},
		{"ipv4", iprange("10.0.0.0/8"), ""},
		{"ipv6", iprange("fd00::/8"), ""},
		{"ipv6 host", iprange("2001:db8::1/128"), ""},
		{"unmasked", iprange("10.1.2.3/8"), ""},
		{"bare ip", iprange("10.0.0.1"), `f: Invalid value: "10.0.0.1": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.1/32`},
		{"dotted mask", iprange("10.1.0.0/255.255.0.0"), `f: Invalid value: "10.1.0.0/255.255.0.0": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.1.0.0/16`},
		{"joined", iprange("10.0.0.0/8,10.0.0.1"), `f: Invalid value: "10.0.0.0/8,10.0.0.1": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.0/8, 10.0.0.1/32`},
		{"zero-padded bits", iprange("10.0.0.0/08"), `f: Invalid value: "10.0.0.0/08": must be a CIDR such as 10.0.0.0/8 or fd00::/8, each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)`},
		{"octal bits", iprange("10.0.0.0/010"), `f: Invalid value: "10.0.0.0/010": must be a CIDR such as 10.0.0.0/8 or fd00::/8, each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)`},
		{"octal octet", iprange("010.0.0.0/8"), `f: Invalid value: "010.0.0.0/8": must be a CIDR such as 10.0.0.0/8 or fd00::/8, each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)`},
		{"ipv6 bits zero-padded", iprange("fd00::/08"), `f: Invalid value: "fd00::/08": must be a CIDR such as 10.0.0.0/8 or fd00::/8, each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)`},
		{"ipv6 groups zero-padded", iprange("fd00:0db8::/32"), ""},
		{"zero octet", iprange("10.0.0.0/0"), ""},
		{"v4 bits", iprange("10.0.0.0/33"), `f: Invalid value: "10.0.0.0/33": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{"v6 bits", iprange("fd00::/129"), `f: Invalid value: "fd00::/129": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{"zone", iprange("fe80::1%eth0/64"), `f: Invalid value: "fe80::1%eth0/64": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{"space", iprange(" 10.0.0.0/8"), `f: Invalid value: " 10.0.0.0/8": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.0/8`},
		{"empty", iprange(""), `f: Invalid value: "": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},
		{"ipv4-mapped", iprange("::ffff:10.0.0.0/104"), `f: Invalid value: "::ffff:10.0.0.0/104": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 10.0.0.0/8`},
		{"ipv4-mapped host", iprange("::ffff:10.1.2.3/128"), `f: Invalid value: "::ffff:10.1.2.3/128": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 10.1.2.3/32`},
		{"ipv4-mapped all", iprange("::ffff:0.0.0.0/96"), `f: Invalid value: "::ffff:0.0.0.0/96": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 0.0.0.0/0`},
		{"ipv6 all", iprange("::/0"), ""},
		{"exclusion list", func() field.ErrorList { _, e := IPRanges(p, []string{"10.0.0.0/8", "fd00::/8", "x"}); return e }(),
			`f[2]: Invalid value: "x": must be a CIDR such as 10.0.0.0/8 or fd00::/8`},

		// Inclusion lists: IPv4 only, one reason for the validator and the injector.
		{"intercepted ipv4", intercepted("10.96.0.0/12"), ""},
		{"intercepted ipv4 all", intercepted("0.0.0.0/0"), ""},
		{"intercepted ipv6", intercepted("fd00::/8"), `f: Invalid value: "fd00::/8": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`},
		{"intercepted ipv6 all", intercepted("::/0"), `f: Invalid value: "::/0": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`},
		{"intercepted unparsable", intercepted("10.0.0.1"), `f: Invalid value: "10.0.0.1": must be a CIDR such as 10.0.0.0/8 or fd00::/8, write it as 10.0.0.1/32`},
		{"intercepted ipv4-mapped", intercepted("::ffff:10.0.0.0/104"), `f: Invalid value: "::ffff:10.0.0.0/104": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 10.0.0.0/8`},
		{"inclusion list", func() field.ErrorList {
			_, e := each(p, []string{"10.0.0.0/8", "2001:db8::/32", "192.168.0.0/16"}, InterceptedIPRange)
			return e
		}(), `f[1]: Invalid value: "2001:db8::/32": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted`},

		{"ports", Ports(p, []int64{1, 65535}), ""},
		{"port 0", Ports(p, []int64{80, 0}), "f[1]: Invalid value: 0: should be greater than or equal to 1"},
		{"port high", Ports(p, []int64{65536}), "f[0]: Invalid value: 65536: should be less than or equal to 65535"},
		{"one port low", Port(p, 0), "f: Invalid value: 0: should be greater than or equal to 1"},
		{"one port ok", Port(p, 65535), ""},
		{"range extreme", Range(p, math.MinInt64, 0, 1), "f: Invalid value: " + strconv.FormatInt(math.MinInt64, 10) + ": should be greater than or equal to 0"},
		{"range high", Range(p, 101, 0, 100), "f: Invalid value: 101: should be less than or equal to 100"},

		{"if eth0", InterfaceName(p, "eth0"), ""},
		{"if vlan", InterfaceName(p, "eth0.100"), ""},
		{"if wildcard", InterfaceName(p, "veth+"), ""},
		{"if 15 bytes", InterfaceName(p, strings.Repeat("a", 15)), ""},
		{"if utf-8", InterfaceName(p, "née0"), ""},
		{"if 16 bytes", InterfaceName(p, strings.Repeat("a", 16)), strings.Replace(ifWant, "%q", `"`+strings.Repeat("a", 16)+`"`, 1) + "16 bytes"},
		{"if empty", InterfaceName(p, ""), strings.Replace(ifWant, "%q", `""`, 1) + "empty"},
		{"if dot", InterfaceName(p, "."), strings.Replace(ifWant, "%q", `"."`, 1) + "reserved name"},
		{"if dotdot", InterfaceName(p, ".."), strings.Replace(ifWant, "%q", `".."`, 1) + "reserved name"},
		{"if slash", InterfaceName(p, "a/b"), strings.Replace(ifWant, "%q", `"a/b"`, 1) + "contains '/'"},
		{"if colon", InterfaceName(p, "eth0:1"), strings.Replace(ifWant, "%q", `"eth0:1"`, 1) + "contains ':'"},
		{"if space", InterfaceName(p, "eth0 -j"), strings.Replace(ifWant, "%q", `"eth0 -j"`, 1) + "contains the whitespace or control byte 0x20"},
		{"if newline", InterfaceName(p, "eth0\n-A"), strings.Replace(ifWant, "%q", `"eth0\n-A"`, 1) + "contains the whitespace or control byte 0xa"},
		{"if shell", InterfaceName(p, "e$(reboot)"), strings.Replace(ifWant, "%q", `"e$(reboot)"`, 1) + "contains '$'"},
		{"if backtick", InterfaceName(p, "e`id`"), strings.Replace(ifWant, "%q", "\"e`id`\"", 1) + "contains '`'"},
		{"if delete", InterfaceName(p, "eth\x7f"), strings.Replace(ifWant, "%q", `"eth\x7f"`, 1) + "contains the whitespace or control byte 0x7f"},
		{"if single quote", InterfaceName(p, "e'x"), strings.Replace(ifWant, "%q", `"e'x"`, 1) + `contains '\''`},
		{"if double quote", InterfaceName(p, `e"x`), strings.Replace(ifWant, "%q", `"e\"x"`, 1) + `contains '"'`},
		{"if backslash", InterfaceName(p, `e\x`), strings.Replace(ifWant, "%q", `"e\\x"`, 1) + `contains '\\'`},
		{"if list", InterfaceNames(p, []string{"eth1", ""}), strings.Replace(strings.Replace(ifWant, "f:", "f[1]:", 1), "%q", `""`, 1) + "empty"},

		{"key 2048", CertKeyBitSize(p, 2048), ""},
		{"key 2560", CertKeyBitSize(p, 2560), ""},
		{"key 4096", CertKeyBitSize(p, 4096), ""},
		{"key 1024", CertKeyBitSize(p, 1024), "f: Invalid value: 1024: should be greater than or equal to 2048"},
		{"key 8192", CertKeyBitSize(p, 8192), "f: Invalid value: 8192: should be less than or equal to 4096"},

		{"repo unset", RepoServerAddr(p, ""), ""},
		{"repo localhost", RepoServerAddr(p, "LocalHost"), ""},
		{"repo loopback typo", RepoServerAddr(p, "127.0.0"), ""},
		{"repo ipv6", RepoServerAddr(p, "fd00::1"), ""},
		// FSM writes "http://<ipaddr>:<port>/...": "[fd00::1]" is the form
		// FSM's sidecar and controller both reach.
		{"repo ipv6 in brackets", RepoServerAddr(p, "[fd00::1]"), ""},
		{"repo ipv6 bracket unclosed", RepoServerAddr(p, "[fd00::1"), `f: Invalid value: "[fd00::1": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`},
		{"repo ipv4 in brackets", RepoServerAddr(p, "[10.0.0.1]"), `f: Invalid value: "[10.0.0.1]": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`},
		// The URL would need "%25eth0": FSM's controller cannot parse it.
		{"repo ipv6 zone", RepoServerAddr(p, "fe80::1%eth0"), `f: Invalid value: "fe80::1%eth0": must be an IP address without a zone (%eth0): the repo URL cannot carry it`},
		{"repo ipv6 zone in brackets", RepoServerAddr(p, "[fe80::1%eth0]"), `f: Invalid value: "[fe80::1%eth0]": must be an IP address without a zone (%eth0): the repo URL cannot carry it`},
		{"repo host", RepoServerAddr(p, "Repo.Example.com"), ""},
		{"repo absolute host", RepoServerAddr(p, "fsm-repo.fsm-system.svc.cluster.local."), ""},
		{"repo dot only", RepoServerAddr(p, "."), `f: Invalid value: ".": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`},
		{"repo two dots", RepoServerAddr(p, "repo.."), `f: Invalid value: "repo..": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`},
		{"repo space", RepoServerAddr(p, "repo server"), `f: Invalid value: "repo server": must be an IP address or a host name (letters, digits, '-' and '.'), such as 10.96.200.10 or fsm-controller.fsm-system`},
		{"enum", Enum(p, "PodIP", LocalProxyModes...), ""},
		{"enum unset", Enum(p, "", LocalProxyModes...), ""},
		{"enum bad", Enum(p, "podip", LocalProxyModes...), `f: Unsupported value: "podip": supported values: "Localhost", "PodIP"`},
		{"enum case-sensitive", Enum(p, "A", "a"), `f: Unsupported value: "A": supported values: "a"`},
	} {
		if got := errText(tc.errs); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestIPTablesRanges: the forms iptables' -d reads as ranges that a CIDR
// parser refuses, and those it does not read (or reads otherwise: its
// numbers are strtoul base 0, so a leading zero means octal). The real
// iptables is run over these in test/meshimages (TestIPTablesReadsRanges).
func TestIPTablesRanges(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"10.0.0.1", "10.0.0.1/32"},
		{"10.1.2.3/255.0.0.0", "10.0.0.0/8"},
		{"192.168.7.0/255.255.255.128", "192.168.7.0/25"},
		{"10.0.0.0/0.0.0.0", "0.0.0.0/0"},
		{"10.0.0.0/255.255.255.255", "10.0.0.0/32"},
		{" 10.0.0.0/8 ", "10.0.0.0/8"},
		{"\t169.254.169.254", "169.254.169.254/32"},
		{"10.0.0.0/8", "10.0.0.0/8"},
		{"10.0.0.0/8,192.168.0.1,172.16.0.0/255.240.0.0", "10.0.0.0/8, 192.168.0.1/32, 172.16.0.0/12"},
		{"10.0.0.0/8,", ""},
		{"10.0.0.0/8, 10.1.0.0/16", ""}, // two tokens to iptables-restore
		{"10.0.0.0/08", ""},             // iptables: invalid mask `08'
		{"10.0.0.0/010", ""},            // iptables reads /8, ParseCIDR /10
		{"010.0.0.1", ""},               // octal octet to iptables
		{"10.0.0.0/255.0.255.0", ""},    // non-contiguous: no CIDR states it
		{"10.0.0.0/255.0.0.00", ""},
		{"10.0.0.0/ff.0.0.0", ""},
		{"10.0.0.0 /8", ""},
		{"10.0.0.0/8 -j ACCEPT", ""}, // more than one token
		{"fd00::1", ""},              // iptables (IPv4) refuses IPv6
		{"::ffff:10.0.0.1", ""},
		{"example.com", ""},
		{"", ""},
		{"10.0.0.0/33", ""},
	} {
		got := ""
		if pfxs, ok := IPTablesRanges(tc.in); ok {
			got = prefixList(pfxs)
		}
		if got != tc.want {
			t.Errorf("IPTablesRanges(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestIPRangeMasks(t *testing.T) {
	pfx, errs := IPRange(field.NewPath("f"), "fd12:3456::1/16")
	if len(errs) != 0 || pfx.String() != "fd12::/16" {
		t.Errorf("got %v %v, want fd12::/16", pfx, errs)
	}
	pfxs, errs := each(field.NewPath("f"), []string{"10.1.2.3/8", "fd00::/8"}, InterceptedIPRange)
	if len(errs) != 1 || pfxs[0].String() != "10.0.0.0/8" || pfxs[1].IsValid() {
		t.Errorf("got %v %v, want [10.0.0.0/8 invalid] and one error", pfxs, errs)
	}
}

func TestResources(t *testing.T) {
	p := field.NewPath("r")
	q := resource.MustParse
	for _, tc := range []struct {
		name string
		r    corev1.ResourceRequirements
		want string
	}{
		{"empty", corev1.ResourceRequirements{}, ""},
		{"typical", corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{"cpu": q("2"), "memory": q("1Gi"), "ephemeral-storage": q("1Gi")},
			Requests: corev1.ResourceList{"cpu": q("100m"), "memory": q("64Mi")},
		}, ""},
		{"requests only", corev1.ResourceRequirements{Requests: corev1.ResourceList{"cpu": q("4")}}, ""},
		{"request above limit", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"cpu": q("100m")}, Requests: corev1.ResourceList{"cpu": q("200m")},
		}, `r.requests[cpu]: Invalid value: "200m": must be less than or equal to the cpu limit (100m)`},
		{"negative", corev1.ResourceRequirements{Limits: corev1.ResourceList{"memory": q("-1Mi")}},
			`r.limits[memory]: Invalid value: "-1Mi": must be greater than or equal to 0`},
		{"unknown name", corev1.ResourceRequirements{Limits: corev1.ResourceList{"gpu": q("1")}},
			`r.limits[gpu]: Invalid value: "gpu": must be cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource such as example.com/device`},
		{"kubernetes.io name", corev1.ResourceRequirements{Limits: corev1.ResourceList{"kubernetes.io/foo": q("1")}},
			`r.limits[kubernetes.io/foo]: Invalid value: "kubernetes.io/foo": must be cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource such as example.com/device`},
		{"extended name not qualified", corev1.ResourceRequirements{Limits: corev1.ResourceList{"example.com/-dev": q("1")}},
			`r.limits[example.com/-dev]: Invalid value: "example.com/-dev": must be cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource such as example.com/device`},
		{"extended ok", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"example.com/dev": q("1")}, Requests: corev1.ResourceList{"example.com/dev": q("1")},
		}, ""},
		{"extended overcommit", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"example.com/dev": q("2")}, Requests: corev1.ResourceList{"example.com/dev": q("1")},
		}, `r.requests[example.com/dev]: Invalid value: "1": must equal the limit (2): extended resources cannot be overcommitted`},
		{"extended request only", corev1.ResourceRequirements{Requests: corev1.ResourceList{"example.com/dev": q("1")}},
			`r.limits[example.com/dev]: Required value: extended resource example.com/dev cannot be overcommitted: set a limit equal to the request (1)`},
		{"extended fraction", corev1.ResourceRequirements{Limits: corev1.ResourceList{"example.com/dev": q("500m")}},
			`r.limits[example.com/dev]: Invalid value: "500m": must be a whole number: extended resources cannot be fractional`},
		{"hugepages with memory", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-2Mi": q("4Mi"), "memory": q("1Gi")}}, ""},
		{"hugepages alone", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-2Mi": q("4Mi")}},
			`r: Forbidden: hugepages require a cpu or memory request or limit`},
		{"hugepages bad size", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-big": q("1"), "memory": q("1Gi")}},
			`r.limits[hugepages-big]: Unsupported value: "hugepages-big": supported values: "hugepages-<size> such as hugepages-2Mi"`},
		// Hugepages as the apiserver sees them: not overcommittable, whole pages.
		{"hugepages limit only", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-2Mi": q("8Mi"), "memory": q("128Mi")}}, ""},
		{"hugepages request equals limit", corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{"hugepages-1Gi": q("2Gi"), "memory": q("128Mi")},
			Requests: corev1.ResourceList{"hugepages-1Gi": q("2Gi"), "memory": q("64Mi")},
		}, ""},
		{"hugepages multiple in bytes", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-2Mi": q("4194304"), "cpu": q("1")}}, ""},
		{"hugepages zero", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"hugepages-2Mi": q("0"), "memory": q("128Mi")}, Requests: corev1.ResourceList{"hugepages-2Mi": q("0")},
		}, ""},
		{"hugepages request without limit", corev1.ResourceRequirements{Requests: corev1.ResourceList{"hugepages-2Mi": q("4Mi"), "memory": q("64Mi")}},
			`r.limits[hugepages-2Mi]: Required value: Limit must be set for non overcommitable resources: set a hugepages-2Mi limit equal to the request (4Mi)`},
		{"hugepages request below limit", corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{"hugepages-2Mi": q("8Mi"), "memory": q("128Mi")},
			Requests: corev1.ResourceList{"hugepages-2Mi": q("4Mi"), "memory": q("64Mi")},
		}, `r.requests[hugepages-2Mi]: Invalid value: "4Mi": must be equal to hugepages-2Mi limit of 8Mi: hugepages cannot be overcommitted`},
		{"hugepages request above limit", corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{"hugepages-2Mi": q("4Mi"), "memory": q("128Mi")},
			Requests: corev1.ResourceList{"hugepages-2Mi": q("8Mi")},
		}, `r.requests[hugepages-2Mi]: Invalid value: "8Mi": must be equal to hugepages-2Mi limit of 4Mi: hugepages cannot be overcommitted`},
		{"hugepages not a multiple", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-2Mi": q("3Mi"), "memory": q("128Mi")}},
			`r.limits[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not positive integer multiple of hugepages-2Mi: hugepages are allocated in whole pages`},
		{"hugepages 1Gi page, Mi quantity", corev1.ResourceRequirements{
			Limits: corev1.ResourceList{"hugepages-1Gi": q("512Mi"), "memory": q("1Gi")}, Requests: corev1.ResourceList{"hugepages-1Gi": q("512Mi")},
		}, `[r.limits[hugepages-1Gi]: Invalid value: "512Mi": 512Mi is not positive integer multiple of hugepages-1Gi: hugepages are allocated in whole pages, ` +
			`r.requests[hugepages-1Gi]: Invalid value: "512Mi": 512Mi is not positive integer multiple of hugepages-1Gi: hugepages are allocated in whole pages]`},
		{"hugepages fractional page size", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-1500m": q("3"), "memory": q("1Gi")}},
			`r.limits[hugepages-1500m]: Unsupported value: "hugepages-1500m": supported values: "hugepages-<size> such as hugepages-2Mi"`},
		{"hugepages page size overflows", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-1e19": q("0"), "memory": q("1Gi")}},
			`r.limits[hugepages-1e19]: Unsupported value: "hugepages-1e19": supported values: "hugepages-<size> such as hugepages-2Mi"`},
		{"hugepages zero page size", corev1.ResourceRequirements{Limits: corev1.ResourceList{"hugepages-0": q("0"), "memory": q("1Gi")}},
			`r.limits[hugepages-0]: Unsupported value: "hugepages-0": supported values: "hugepages-<size> such as hugepages-2Mi"`},
		{"claims", corev1.ResourceRequirements{Claims: []corev1.ResourceClaim{{Name: "gpu"}}},
			`r.claims[0]: Forbidden: claim "gpu": the injected container would need it in every pod's spec.resourceClaims, and pods without it would be refused`},
	} {
		if got := errText(Resources(p, tc.r)); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", tc.name, got, tc.want)
		}
	}
}

// TestSidecarLogLevel: what Pipy 1.5.12 takes for --log-level
// (src/main-options.cpp) starts as written; the levels FSM's chart offers
// that Pipy does not know (it exits at start on them) become the nearest
// Pipy level; anything else is refused naming what Pipy takes.
func TestSidecarLogLevel(t *testing.T) {
	p := field.NewPath("spec", "sidecar", "logLevel")
	for _, tc := range []struct {
		v, want      string
		wantReplaced bool
		wantErr      string
	}{
		{v: ""},
		{v: "debug", want: "debug"},
		{v: "info", want: "info"},
		{v: "warn", want: "warn"},
		{v: "error", want: "error"},
		{v: "debug:codebase", want: "debug:codebase"},
		{v: "debug:inbound+outbound", want: "debug:inbound+outbound"},
		{v: "trace", want: "debug", wantReplaced: true},
		{v: "warning", want: "warn", wantReplaced: true},
		{v: "critical", want: "error", wantReplaced: true},
		{v: "off", want: "error", wantReplaced: true},
		{v: "debug:", wantErr: `spec.sidecar.logLevel: Invalid value: "debug:": unknown Pipy log topic "": debug:<topic>[+<topic>...] takes alloc, thread, pipeline, dump, listener, inbound, outbound, socket, files, subproc, tcp, udp, http2, elf, bpf, user, codebase`},
		{v: "debug:http", wantErr: `spec.sidecar.logLevel: Invalid value: "debug:http": unknown Pipy log topic "http": debug:<topic>[+<topic>...] takes alloc, thread, pipeline, dump, listener, inbound, outbound, socket, files, subproc, tcp, udp, http2, elf, bpf, user, codebase`},
		{v: "debugging", wantErr: `spec.sidecar.logLevel: Unsupported value: "debugging": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`},
		{v: "Error", wantErr: `spec.sidecar.logLevel: Unsupported value: "Error": supported values: "debug", "info", "warn", "error", "debug:<topic>[+<topic>...]"`},
	} {
		got, replaced, errs := SidecarLogLevel(p, tc.v)
		if got != tc.want || replaced != tc.wantReplaced || errText(errs) != tc.wantErr {
			t.Errorf("SidecarLogLevel(%q) = %q, %v, %q; want %q, %v, %q", tc.v, got, replaced, errText(errs), tc.want, tc.wantReplaced, tc.wantErr)
		}
	}
}
