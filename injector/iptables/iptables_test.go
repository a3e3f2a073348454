package iptables

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	const key = "flomesh.io/outbound-port-exclusion-list"
	for _, tc := range []struct {
		in   string
		want []int
		err  string
	}{
		{"80", []int{80}, ""},
		{" 80 , 443,65535", []int{80, 443, 65535}, ""},
		{"1", []int{1}, ""},
		{"0", nil, "Invalid port value '0' specified for annotation '" + key + "'"},
		{"65536", nil, "Invalid port value '65536' specified for annotation '" + key + "'"},
		{"-5", nil, "Invalid port value '-5' specified for annotation '" + key + "'"},
		{"http", nil, "Invalid port value 'http' specified for annotation '" + key + "'"},
		{"", nil, "Invalid port value '' specified for annotation '" + key + "'"},
		{"80,,81", nil, "Invalid port value '' specified for annotation '" + key + "'"},
	} {
		got, err := ParsePorts(key, tc.in)
		if tc.err != "" {
			if err == nil || err.Error() != tc.err {
				t.Errorf("ParsePorts(%q) err = %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParsePorts(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseCIDRs(t *testing.T) {
	const (
		ex      = "flomesh.io/outbound-ip-range-exclusion-list"
		in      = "flomesh.io/outbound-ip-range-inclusion-list"
		noIPv6  = ": the sidecar listens on IPv4 only (Pipy binds 0.0.0.0), so IPv6 traffic cannot be intercepted"
		notCIDR = ": must be a CIDR such as 10.0.0.0/8 or fd00::/8"
	)
	invalid := func(v, key string) string {
		return "Invalid IP range '" + v + "' specified for annotation '" + key + "'"
	}
	for _, tc := range []struct {
		key, in string
		want    []string
		err     string
	}{
		{ex, "10.0.0.0/8", []string{"10.0.0.0/8"}, ""},
		{ex, "10.0.0.0/8, 192.168.1.1/32", []string{"10.0.0.0/8", "192.168.1.1/32"}, ""},
		// IPv6 exclusions are accepted (and are no-ops, see TestRulesIPv4Only).
		{ex, "fd00::/8", []string{"fd00::/8"}, ""},
		{ex, "10.0.0.0/8,fd00::/8", []string{"10.0.0.0/8", "fd00::/8"}, ""},
		// FSM's message, then why and, where one is meant, the CIDR to write.
		{ex, "10.0.0.1", nil, invalid("10.0.0.1", ex) + notCIDR + ", write it as 10.0.0.1/32"},
		{ex, "10.0.0.0/33", nil, invalid("10.0.0.0/33", ex) + notCIDR},
		{ex, "10.0.0.0/010", nil, invalid("10.0.0.0/010", ex) + notCIDR + ", each number without a leading zero (iptables reads 010 as octal 8, other readers as 10)"},
		{ex, "fd00::/129", nil, invalid("fd00::/129", ex) + notCIDR},
		{ex, "fe80::1%eth0/64", nil, invalid("fe80::1%eth0/64", ex) + notCIDR},
		{ex, "", nil, invalid("", ex) + notCIDR},
		{ex, "::ffff:10.0.0.0/104", nil, invalid("::ffff:10.0.0.0/104", ex) + ": is an IPv4-mapped IPv6 range: that traffic leaves the pod as IPv4, write it as 10.0.0.0/8"},

		{in, "10.96.0.0/12, 10.0.0.0/8", []string{"10.96.0.0/12", "10.0.0.0/8"}, ""},
		{in, "10.96.0.0/12,fd00::/8", nil, invalid("fd00::/8", in) + noIPv6},
		{in, "::/0", nil, invalid("::/0", in) + noIPv6},
		{in, "10.0.0.0/8,foo", nil, invalid("foo", in) + notCIDR},
		{in, "fd00::/129", nil, invalid("fd00::/129", in) + notCIDR},
	} {
		parse := ParseExclusionCIDRs
		if tc.key == in {
			parse = ParseInclusionCIDRs
		}
		got, err := parse(tc.key, tc.in)
		if (tc.err == "") != (err == nil) || (err != nil && err.Error() != tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("%s %q = %q, %v; want %q, %q", tc.key, tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestRules(t *testing.T) {
	ports := make([]int, 17)
	for i := range ports {
		ports[i] = 1000 + i
	}
	r := Rules(Config{
		OutboundPortExclusions:     ports,
		InboundPortExclusions:      []int{9090},
		OutboundIPRangeExclusions:  []string{"10.0.0.0/8"},
		OutboundIPRangeInclusions:  []string{"10.96.0.0/12"},
		NetworkInterfaceExclusions: []string{"net1"},
		LocalProxyPodIP:            true,
	})
	for _, want := range []string{
		"-A FSM_PROXY_OUTBOUND -p tcp --match multiport --dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 -j RETURN\n",
		"-A FSM_PROXY_OUTBOUND -p tcp --match multiport --dports 1015,1016 -j RETURN\n",
		"-A FSM_PROXY_INBOUND -p tcp --match multiport --dports 9090 -j RETURN\n",
		"-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN\n",
		"-A FSM_PROXY_OUTBOUND -d 10.96.0.0/12 -j FSM_PROXY_OUT_REDIRECT\n",
		"-A FSM_PROXY_INBOUND -i net1 -j RETURN\n",
		"-A FSM_PROXY_OUTBOUND -o net1 -j RETURN\n",
		"-j DNAT --to-destination $POD_IP}\n",
	} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
	// An inclusion list replaces the catch-all redirect.
	if strings.Contains(r, "-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT\n") {
		t.Error("catch-all redirect present despite an inclusion list")
	}
	// The inbound exclusion must come before the inbound redirect.
	if strings.Index(r, "--dports 9090 -j RETURN") > strings.Index(r, "-A FSM_PROXY_INBOUND -p tcp -j FSM_PROXY_IN_REDIRECT") {
		t.Error("inbound exclusion after the redirect rule")
	}
	if !strings.HasPrefix(r, "*nat\n") || !strings.HasSuffix(r, "COMMIT\n") {
		t.Errorf("not an iptables-restore table:\n%s", r)
	}
}

func TestMerge(t *testing.T) {
	if got := Merge([]int{1, 2, 2}, []int{3, 1}); !slices.Equal(got, []int{1, 2, 3}) {
		t.Errorf("Merge = %v", got)
	}
}

// ipv4Only is the rule set before IPv6 support, byte for byte: the IPv4
// script must not change when no IPv6 range is configured (FSM-recorded
// outputs are compared against it).
const ipv4Only = `iptables-restore --noflush <<EOF
*nat
:FSM_PROXY_INBOUND - [0:0]
:FSM_PROXY_IN_REDIRECT - [0:0]
:FSM_PROXY_OUTBOUND - [0:0]
:FSM_PROXY_OUT_REDIRECT - [0:0]
-A FSM_PROXY_IN_REDIRECT -p tcp -j REDIRECT --to-port 15003
-A PREROUTING -p tcp -j FSM_PROXY_INBOUND
-A FSM_PROXY_INBOUND -i eth1 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --dport 15010 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --dport 15901 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --dport 15902 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --dport 15903 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --dport 15904 -j RETURN
-A FSM_PROXY_INBOUND -p tcp --match multiport --dports 9901,8081 -j RETURN
-A FSM_PROXY_INBOUND -p tcp -j FSM_PROXY_IN_REDIRECT
-A FSM_PROXY_OUT_REDIRECT -p tcp -j REDIRECT --to-port 15001
-A OUTPUT -p tcp -j FSM_PROXY_OUTBOUND
-A FSM_PROXY_OUTBOUND -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1500 -j FSM_PROXY_IN_REDIRECT
-A FSM_PROXY_OUTBOUND -o lo -m owner ! --uid-owner 1500 -j RETURN
-A FSM_PROXY_OUTBOUND -m owner --uid-owner 1500 -j RETURN
-A FSM_PROXY_OUTBOUND -d 127.0.0.1/32 -j RETURN
-A FSM_PROXY_OUTBOUND -o eth1 -j RETURN
-A FSM_PROXY_OUTBOUND -p tcp --match multiport --dports 6379,8443,5432 -j RETURN
-A FSM_PROXY_OUTBOUND -d 169.254.169.254/32 -j RETURN
-A FSM_PROXY_OUTBOUND -d 10.1.0.0/16 -j RETURN
-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT
COMMIT
EOF
`

func TestScriptIPv4OnlyUnchanged(t *testing.T) {
	c := Config{
		OutboundPortExclusions:     []int{6379, 8443, 5432},
		InboundPortExclusions:      []int{9901, 8081},
		OutboundIPRangeExclusions:  []string{"169.254.169.254/32", "10.1.0.0/16"},
		NetworkInterfaceExclusions: []string{"eth1"},
	}
	if got := Script(c); got != ipv4Only {
		t.Errorf("IPv4-only script changed:\n%s", got)
	}
}

// The mesh never intercepts IPv6, so an IPv6 exclusion changes nothing: the
// script is exactly the one without it, IPv4 rules only, and no ip6tables.
func TestScriptIgnoresIPv6Exclusions(t *testing.T) {
	for _, tc := range []struct {
		name      string
		with, not Config
	}{
		{
			name: "IPv6 ranges among IPv4 ones",
			with: Config{
				OutboundPortExclusions:     []int{6379, 8443, 5432},
				InboundPortExclusions:      []int{9901, 8081},
				OutboundIPRangeExclusions:  []string{"fd00::/8", "169.254.169.254/32", "2001:db8::/32", "10.1.0.0/16", "::/0"},
				NetworkInterfaceExclusions: []string{"eth1"},
			},
			not: Config{
				OutboundPortExclusions:     []int{6379, 8443, 5432},
				InboundPortExclusions:      []int{9901, 8081},
				OutboundIPRangeExclusions:  []string{"169.254.169.254/32", "10.1.0.0/16"},
				NetworkInterfaceExclusions: []string{"eth1"},
			},
		},
		{
			name: "only an IPv6 range, with an IPv4 inclusion",
			with: Config{OutboundIPRangeExclusions: []string{"fd00::/8"}, OutboundIPRangeInclusions: []string{"10.96.0.0/12"}, LocalProxyPodIP: true},
			not:  Config{OutboundIPRangeInclusions: []string{"10.96.0.0/12"}, LocalProxyPodIP: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, want := Script(tc.with), Script(tc.not)
			if got != want {
				t.Errorf("script with IPv6 exclusions:\n%s\nwant (as without them):\n%s", got, want)
			}
			if strings.Contains(got, "ip6tables") || strings.Contains(got, "::") || strings.Contains(got, "set -e") {
				t.Errorf("script goes beyond FSM's IPv4 rule set:\n%s", got)
			}
		})
	}
	if got := Script(Config{OutboundIPRangeExclusions: []string{"fd00::/8"}}); got != Script(Config{}) {
		t.Errorf("an IPv6-only exclusion list changed the default script:\n%s", got)
	}
}

// packet is what the outbound chain's rules match on.
type packet struct {
	out, dst string
	uid      int
}

// outboundFate walks FSM_PROXY_OUTBOUND of rules first-match, as the kernel
// does, and returns the target of the first rule the packet matches. It
// knows the matches the rule set uses for outbound TCP: -o, -d, --uid-owner
// (each possibly negated) and multiport --dports, which never matches here.
func outboundFate(t *testing.T, rules string, p packet) string {
	t.Helper()
	for _, line := range strings.Split(rules, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || f[1] != OutboundChain {
			continue
		}
		match, target, neg := true, "", false
		for i := 2; i < len(f); i++ {
			switch f[i] {
			case "!":
				neg = true
				continue
			case "-o":
				i++
				match = match && (f[i] == p.out) != neg
			case "-d":
				i++
				match = match && (f[i] == p.dst+"/32") != neg
			case "--uid-owner":
				i++
				match = match && (f[i] == strconv.Itoa(p.uid)) != neg
			case "--dports":
				i++
				match = false
			case "-j":
				i++
				target = f[i]
			}
			neg = false
		}
		if match {
			return target
		}
	}
	return "end of chain"
}

// An excluded interface stops interception on it, but lo, excluded, keeps
// the loopback rules FSM puts first: the proxy reaching its app on the pod
// IP still goes through the inbound listener.
func TestInterfaceExclusionKeepsLoopbackRules(t *testing.T) {
	const podIP = "10.244.0.7"
	for _, tc := range []struct {
		name     string
		excluded []string
		p        packet
		want     string
	}{
		{"proxy to its pod IP over lo, lo excluded", []string{"lo"}, packet{"lo", podIP, ProxyUID}, InboundRedirectChain},
		{"proxy to its pod IP over lo", nil, packet{"lo", podIP, ProxyUID}, InboundRedirectChain},
		{"app to its pod IP over lo, lo excluded", []string{"lo"}, packet{"lo", podIP, 1000}, "RETURN"},
		{"proxy to localhost, lo excluded", []string{"lo"}, packet{"lo", "127.0.0.1", ProxyUID}, "RETURN"},
		{"app out of an excluded eth1", []string{"eth1"}, packet{"eth1", "10.96.0.10", 1000}, "RETURN"},
		{"app out of eth0, eth1 excluded", []string{"eth1"}, packet{"eth0", "10.96.0.10", 1000}, OutboundRedirectChain},
	} {
		r := Rules(Config{NetworkInterfaceExclusions: tc.excluded})
		if got := outboundFate(t, r, tc.p); got != tc.want {
			t.Errorf("%s: %+v goes to %s, want %s\n%s", tc.name, tc.p, got, tc.want, r)
		}
	}
}

// localProxyMode PodIP DNATs the proxy's IPv4 loopback traffic to the pod's
// address, which fsm-init reads from the downward API. On a pod whose first
// address (status.podIP) is IPv6 (IPv6-only, or dual-stack listing IPv6
// first) FSM's rule "--to-destination $POD_IP" makes iptables-restore fail
// the whole rule set (`Bad IP address "fd00::5"`): fsm-init exits 2 and the
// pod never starts. The script runs here under sh with an iptables-restore
// that records what it would be fed.
func TestScriptPodIPDNATIsIPv4(t *testing.T) {
	dir := t.TempDir()
	fed := filepath.Join(dir, "fed")
	// Builtins only: PATH holds the stub alone.
	stub := "#!/bin/sh\nwhile IFS= read -r l; do printf '%s\\n' \"$l\"; done > " + fed + "\n"
	if err := os.WriteFile(filepath.Join(dir, "iptables-restore"), []byte(stub), 0o755); err != nil {
		t.Fatal(err)
	}
	script := Script(Config{LocalProxyPodIP: true})
	const dnat = "-A OUTPUT -p tcp -o lo -d 127.0.0.1/32 -m owner --uid-owner 1500 -j DNAT --to-destination "
	for _, tc := range []struct {
		name, podIP, podIPs string
		want                string // the DNAT's address, "" for no DNAT
	}{
		{"IPv4", "10.244.0.7", "10.244.0.7", "10.244.0.7"},
		{"dual-stack, IPv4 first", "10.244.0.7", "10.244.0.7,fd00::7", "10.244.0.7"},
		// The proxy's loopback traffic is IPv4: its pod address is the IPv4 one.
		{"dual-stack, IPv6 first", "fd00::7", "fd00::7,10.244.0.7", "10.244.0.7"},
		// No IPv4 address to DNAT to, and no IPv4 traffic for the proxy to
		// forward: no DNAT, and the pod starts.
		{"IPv6 only", "fd00::7", "fd00::7", ""},
		// A kubelet that does not fill POD_IPS: status.podIP, as FSM.
		{"POD_IPS empty", "10.244.0.7", "", "10.244.0.7"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_ = os.Remove(fed)
			cmd := exec.Command("/bin/sh", "-c", script)
			cmd.Env = []string{"PATH=" + dir, "POD_IP=" + tc.podIP, "POD_IPS=" + tc.podIPs}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("script: %v: %s", err, out)
			}
			b, err := os.ReadFile(fed)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, "DNAT") {
					got = append(got, line)
				}
			}
			want := []string{dnat + tc.want}
			if tc.want == "" {
				want = nil
			}
			if !slices.Equal(got, want) {
				t.Errorf("DNAT rules fed to iptables-restore = %q, want %q\n%s", got, want, b)
			}
		})
	}
}

// TestUnparsableExclusionReachesIPTables: an exclusion that is neither an
// IPv4 nor an IPv6 CIDR (the lists are validated before; this is the
// fallback Config documents) is kept in the rules for iptables-restore to
// refuse, not dropped as IPv6 ones are: a silently dropped exclusion would
// send that range through the sidecar.
func TestUnparsableExclusionReachesIPTables(t *testing.T) {
	r := Rules(Config{OutboundIPRangeExclusions: []string{"10.0.0.0/8", "10.1.0.0/33", "fd00::/8"}})
	for _, want := range []string{"-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN\n", "-A FSM_PROXY_OUTBOUND -d 10.1.0.0/33 -j RETURN\n"} {
		if !strings.Contains(r, want) {
			t.Errorf("rules lack %q:\n%s", want, r)
		}
	}
	if strings.Contains(r, "fd00::/8") {
		t.Errorf("an IPv6 exclusion reached the IPv4 rules:\n%s", r)
	}
}
