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
		in  string
		err string
	}{
		{"10.0.0.0/8", ""},
		{"10.0.0.0/8, 192.168.1.1/32", ""},
		{"10.0.0.1", "Invalid IP range '10.0.0.1' specified for annotation '" + key + "'"},
		{"10.0.0.0/33", "Invalid IP range '10.0.0.0/33' specified for annotation '" + key + "'"},
		{"", "Invalid IP range '' specified for annotation '" + key + "'"},
		{"fd00::/8", "Invalid IP range 'fd00::/8' specified for annotation '" + key + "': IPv6 ranges are not supported"},
	} {
		_, err := ParseCIDRs(key, tc.in)
		if (tc.err == "") != (err == nil) || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseCIDRs(%q) err = %v, want %q", tc.in, err, tc.err)
		}
	}
}

func TestCheckInterface(t *testing.T) {
	for name, ok := range map[string]bool{"eth0": true, "net1": true, "vlan.100": true, "br-ex_1@x": true, "": false, "eth0 -j ACCEPT": false, "a$(x)": false, "abcdefghijklmnop": false, "eth0\n-A": false} {
		if err := CheckInterface(name); (err == nil) != ok {
			t.Errorf("CheckInterface(%q) = %v, want ok=%v", name, err, ok)
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
