package check

import (
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

func TestChecks(t *testing.T) {
	p := field.NewPath("f")
	cases := []struct {
		name string
		errs field.ErrorList
		want string // "" = valid
	}{
		{"optional port unset", OptionalPort(p, new(int64)), ""},
		{"optional port nil", OptionalPort(p, nil), ""},
		{"optional port high", OptionalPort(p, ptr(int64(65536))), "f: Invalid value: 65536: should be less than or equal to 65535"},
		{"optional port ok", OptionalPort(p, ptr(int64(65535))), ""},
		{"ip ok", IP(p, "fd00::a"), ""},
		{"ip bad", IP(p, "10.0.0.256"), `f: Invalid value: "10.0.0.256": must be an IP address such as 10.96.0.10 or fd00::a`},
		// FSM reads it with net.ParseIP, which refuses a zone: the upstream
		// would be dropped without a word.
		{"ip zone", IP(p, "fd00::a%eth0"), `f: Invalid value: "fd00::a%eth0": must be an IP address such as 10.96.0.10 or fd00::a, without a zone (%eth0)`},
		// FSM dials "<value>:53": brackets make an IPv6 address a host.
		{"dns upstream ipv6 bare", DNSUpstream(p, "fd00::a"), `f: Invalid value: "fd00::a": FSM's DNS proxy forwards to "<value>:53", which for an IPv6 address is not an address and port: write it in brackets, [fd00::a]`},
		{"dns upstream ipv4-mapped bare", DNSUpstream(p, "::ffff:10.96.0.10"), `f: Invalid value: "::ffff:10.96.0.10": FSM's DNS proxy forwards to "<value>:53", which for an IPv6 address is not an address and port: write it in brackets, [::ffff:10.96.0.10]`},
		{"dns upstream bracket unclosed", DNSUpstream(p, "[fd00::a"), `f: Invalid value: "[fd00::a": must be an IPv4 address, an IPv6 address in brackets or a host name, such as 10.96.0.10, [fd00::a] or kube-dns.kube-system.svc.cluster.local`},
		{"dns upstream bracketed port", DNSUpstream(p, "[fd00::a]:53"), `f: Invalid value: "[fd00::a]:53": must be an IPv4 address, an IPv6 address in brackets or a host name, such as 10.96.0.10, [fd00::a] or kube-dns.kube-system.svc.cluster.local`},
		{"duration ok", Duration(p, "1h2m3s"), ""},
		{"duration unitless", Duration(p, "10"), `f: Invalid value: "10": must be a duration such as 90s, 1m30s or 24h`},
		{"duration zero allowed", Duration(p, "0s"), ""},
		{"positive duration zero", PositiveDuration(p, "0h"), `f: Invalid value: "0h": must be longer than 0s`},
		{"positive duration negative", PositiveDuration(p, "-1m"), `f: Invalid value: "-1m": must not be negative`},
		{"fraction bounds", Fraction(p, "1"), ""},
		// 0 is a valid sampledFraction: trace nothing.
		{"fraction zero", Fraction(p, "0"), ""},
		{"fraction negative", Fraction(p, "-0.01"), `f: Invalid value: "-0.01": must be a number between 0 and 1, such as 0.5`},
		{"fraction over one", Fraction(p, "1.0001"), `f: Invalid value: "1.0001": must be a number between 0 and 1, such as 0.5`},
		{"fraction inf", Fraction(p, "+Inf"), `f: Invalid value: "+Inf": must be a number between 0 and 1, such as 0.5`},
		{"fraction nan", Fraction(p, "nan"), `f: Invalid value: "nan": must be a number between 0 and 1, such as 0.5`},
		{"names", NamesUniqueNonEmpty(p, []string{"a", "b"}), ""},
	}
	for _, tc := range cases {
		got := ""
		if len(tc.errs) > 0 {
			got = tc.errs.ToAggregate().Error()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDNSUpstream(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"", true}, {"10.96.0.10", true}, {"kube-dns.kube-system.svc.cluster.local", true}, {"coredns.kube-system.", true},
		{"CoreDNS", true}, {"fd00::a", false}, {"::ffff:10.0.0.1", false}, {"8.8.8", false}, {"8.8.8:53", false},
		{"10.96.0.10:53", false}, {".", false}, {"a..b", false}, {"-dns", false}, {"dns_1", false},
		// FSM dials "[fd00::a]:53": the one way to write an IPv6 upstream,
		// what an IPv6-only cluster's kube-dns needs.
		// Any address Go's dialer takes in brackets is taken.
		{"[fd00::a]", true}, {"[fd00:10:96::a]", true}, {"[::ffff:10.0.0.1]", true}, {"[10.96.0.10]", true}, {"[fe80::1%eth0]", true},
		{"[fd00::a]:53", false}, {"[fd00::a", false}, {"fd00::a]", false}, {"[kube-dns]", false}, {"[]", false}, {"[ fd00::a]", false},
	} {
		if errs := DNSUpstream(field.NewPath("u"), tc.in); (len(errs) == 0) != tc.ok {
			t.Errorf("DNSUpstream(%q) = %v, want ok=%v", tc.in, errs, tc.ok)
		}
	}
}

// TestNamesUniqueNonEmptyReportsEveryEntry: every bad entry of the list is
// reported, each at its own index, whatever came before it (an empty name
// or a duplicate earlier in the list does not hide later problems), and a
// blank name is reported as empty, not also as a duplicate of another blank.
func TestNamesUniqueNonEmptyReportsEveryEntry(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string // "" = valid
	}{
		{"none", nil, ""},
		{"distinct", []string{"a", "b", "A"}, ""},
		{"empty then duplicate", []string{"", "a", "a"},
			`[f[0]: Invalid value: "": must be a non-empty name, f[2]: Duplicate value: "a"]`},
		{"duplicate then empty then duplicate", []string{"a", "a", " ", "b", "b"},
			`[f[1]: Duplicate value: "a", f[2]: Invalid value: " ": must be a non-empty name, f[4]: Duplicate value: "b"]`},
		{"blanks are empty, not duplicates", []string{" ", " ", "\t"},
			`[f[0]: Invalid value: " ": must be a non-empty name, f[1]: Invalid value: " ": must be a non-empty name, f[2]: Invalid value: "\t": must be a non-empty name]`},
		{"third copy is a duplicate too", []string{"x", "x", "x"},
			`[f[1]: Duplicate value: "x", f[2]: Duplicate value: "x"]`},
	} {
		got := ""
		if errs := NamesUniqueNonEmpty(field.NewPath("f"), tc.in); len(errs) > 0 {
			got = errs.ToAggregate().Error()
		}
		if got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}
