package iptables

import (
	"slices"
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
	const key = "flomesh.io/outbound-ip-range-exclusion-list"
	for _, tc := range []struct {
		in   string
		want []string
		err  string
	}{
		{"10.0.0.0/8", []string{"10.0.0.0/8"}, ""},
		{"10.0.0.0/8, 192.168.1.1/32", []string{"10.0.0.0/8", "192.168.1.1/32"}, ""},
		{"fd00::/8", []string{"fd00::/8"}, ""},
		{"10.0.0.0/8,fd00::/8", []string{"10.0.0.0/8", "fd00::/8"}, ""},
		{"10.0.0.1", nil, "Invalid IP range '10.0.0.1' specified for annotation '" + key + "'"},
		{"10.0.0.0/33", nil, "Invalid IP range '10.0.0.0/33' specified for annotation '" + key + "'"},
		{"fd00::/129", nil, "Invalid IP range 'fd00::/129' specified for annotation '" + key + "'"},
		{"fe80::1%eth0/64", nil, "Invalid IP range 'fe80::1%eth0/64' specified for annotation '" + key + "'"},
		{"", nil, "Invalid IP range '' specified for annotation '" + key + "'"},
	} {
		got, err := ParseCIDRs(key, tc.in)
		if (tc.err == "") != (err == nil) || (err != nil && err.Error() != tc.err) || !slices.Equal(got, tc.want) {
			t.Errorf("ParseCIDRs(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
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
		"-j DNAT --to-destination $POD_IP\n",
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
-A FSM_PROXY_OUTBOUND -o eth1 -j RETURN
-A FSM_PROXY_OUTBOUND -o lo ! -d 127.0.0.1/32 -m owner --uid-owner 1500 -j FSM_PROXY_IN_REDIRECT
-A FSM_PROXY_OUTBOUND -o lo -m owner ! --uid-owner 1500 -j RETURN
-A FSM_PROXY_OUTBOUND -m owner --uid-owner 1500 -j RETURN
-A FSM_PROXY_OUTBOUND -d 127.0.0.1/32 -j RETURN
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
	if HasIPv6(c) {
		t.Fatal("HasIPv6 on IPv4-only ranges")
	}
	if got := Script(c); got != ipv4Only {
		t.Errorf("IPv4-only script changed:\n%s", got)
	}
}

// ruleLines returns the lines of the rule set cmd applies in script, nil
// when the script does not run cmd.
func ruleLines(t *testing.T, script, cmd string) []string {
	t.Helper()
	_, body, ok := strings.Cut(script, "\n"+cmd+" --noflush <<EOF\n")
	if !ok {
		return nil
	}
	body, _, ok = strings.Cut(body, "EOF\n")
	if !ok {
		t.Fatalf("%s here-document not closed:\n%s", cmd, script)
	}
	return strings.Split(strings.TrimSuffix(body, "\n"), "\n")
}

func TestScriptDualStack(t *testing.T) {
	const podIPDNAT = "-m owner --uid-owner 1500 -j DNAT --to-destination $POD_IP"
	for _, tc := range []struct {
		name       string
		c          Config
		v4, v6     []string // rules each set must hold
		not4, not6 []string // rules each set must not hold
	}{
		{
			name: "IPv6 exclusion",
			c:    Config{OutboundIPRangeExclusions: []string{"10.0.0.0/8", "fd00::/8"}},
			v4:   []string{"-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN", "-A FSM_PROXY_OUTBOUND -d 127.0.0.1/32 -j RETURN", "-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT"},
			v6: []string{"-A FSM_PROXY_OUTBOUND -d fd00::/8 -j RETURN", "-A FSM_PROXY_OUTBOUND -d ::1/128 -j RETURN",
				"-A FSM_PROXY_OUTBOUND -o lo ! -d ::1/128 -m owner --uid-owner 1500 -j FSM_PROXY_IN_REDIRECT", "-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT"},
			not4: []string{"-A FSM_PROXY_OUTBOUND -d fd00::/8 -j RETURN"},
			not6: []string{"-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN"},
		},
		{
			name: "IPv6 inclusion only: IPv4 intercepts nothing",
			c:    Config{OutboundIPRangeInclusions: []string{"fd00:10:96::/112"}},
			v6:   []string{"-A FSM_PROXY_OUTBOUND -d fd00:10:96::/112 -j FSM_PROXY_OUT_REDIRECT"},
			not4: []string{"-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT", "-A FSM_PROXY_OUTBOUND -d fd00:10:96::/112 -j FSM_PROXY_OUT_REDIRECT"},
			not6: []string{"-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT"},
		},
		{
			name: "both families included, ports and interfaces in both",
			c: Config{
				OutboundIPRangeInclusions:  []string{"10.96.0.0/12", "fd00:10:96::/112"},
				OutboundPortExclusions:     []int{6379},
				InboundPortExclusions:      []int{9090},
				NetworkInterfaceExclusions: []string{"net1"},
				LocalProxyPodIP:            true,
			},
			v4: []string{"-A FSM_PROXY_OUTBOUND -d 10.96.0.0/12 -j FSM_PROXY_OUT_REDIRECT", "-A OUTPUT -p tcp -o lo -d 127.0.0.1/32 " + podIPDNAT},
			v6: []string{"-A FSM_PROXY_OUTBOUND -d fd00:10:96::/112 -j FSM_PROXY_OUT_REDIRECT",
				"-A FSM_PROXY_OUTBOUND -p tcp --match multiport --dports 6379 -j RETURN", "-A FSM_PROXY_INBOUND -p tcp --match multiport --dports 9090 -j RETURN",
				"-A FSM_PROXY_INBOUND -i net1 -j RETURN", "-A FSM_PROXY_OUTBOUND -o net1 -j RETURN"},
			// $POD_IP is the primary (IPv4) address: no DNAT in the IPv6 set.
			not6: []string{"-A OUTPUT -p tcp -o lo -d ::1/128 " + podIPDNAT, "-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT"},
			not4: []string{"-A FSM_PROXY_OUTBOUND -j FSM_PROXY_OUT_REDIRECT"},
		},
		{
			name: "IPv4-mapped range goes to ip6tables",
			c:    Config{OutboundIPRangeExclusions: []string{"::ffff:10.0.0.0/104"}},
			v6:   []string{"-A FSM_PROXY_OUTBOUND -d ::ffff:10.0.0.0/104 -j RETURN"},
			not4: []string{"-A FSM_PROXY_OUTBOUND -d ::ffff:10.0.0.0/104 -j RETURN"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !HasIPv6(tc.c) {
				t.Fatal("HasIPv6 = false")
			}
			s := Script(tc.c)
			if !strings.HasPrefix(s, "set -e\niptables-restore --noflush <<EOF\n*nat\n") {
				t.Errorf("script does not stop at the first failure or lacks the IPv4 set:\n%s", s)
			}
			v4, v6 := ruleLines(t, s, "iptables-restore"), ruleLines(t, s, "ip6tables-restore")
			if v4 == nil || v6 == nil {
				t.Fatalf("a rule set is missing:\n%s", s)
			}
			for _, set := range [][]string{v4, v6} {
				if set[0] != "*nat" || set[len(set)-1] != "COMMIT" || !slices.Contains(set, ":FSM_PROXY_OUT_REDIRECT - [0:0]") {
					t.Errorf("not a nat table with FSM's chains: %q", set)
				}
			}
			check := func(set []string, family string, want, not []string) {
				for _, r := range want {
					if !slices.Contains(set, r) {
						t.Errorf("%s set lacks %q:\n%s", family, r, strings.Join(set, "\n"))
					}
				}
				for _, r := range not {
					if slices.Contains(set, r) {
						t.Errorf("%s set holds %q:\n%s", family, r, strings.Join(set, "\n"))
					}
				}
			}
			check(v4, "IPv4", tc.v4, tc.not4)
			check(v6, "IPv6", tc.v6, tc.not6)
			for _, r := range v6 {
				if strings.Contains(r, "127.0.0.1") {
					t.Errorf("IPv6 set names an IPv4 address: %q", r)
				}
			}
			for _, r := range v4 {
				if strings.Contains(r, "::") {
					t.Errorf("IPv4 set names an IPv6 address: %q", r)
				}
			}
		})
	}
}
