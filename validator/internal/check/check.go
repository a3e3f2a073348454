// Package check holds the field-level checks shared by the validator's kinds
// that the injector does not need; ports, ranges and enums are in
// meshconfig/rules, shared with the injector.
// Each check returns field errors naming the full path, the bad value and what
// is allowed; none of them panics on any input.
package check

import (
	"net/netip"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// OptionalPort checks a port where 0 means "not set".
func OptionalPort(p *field.Path, v *int64) field.ErrorList {
	if v == nil || *v == 0 {
		return nil
	}
	return rules.Port(p, *v)
}

// IP checks an IPv4 or IPv6 address; empty is "not set". An IPv6 zone
// (fe80::1%eth0) is refused: FSM reads these with net.ParseIP, which
// refuses it, and drops the value without a word.
func IP(p *field.Path, s string) field.ErrorList {
	if s == "" {
		return nil
	}
	const want = "must be an IP address such as 10.96.0.10 or fd00::a"
	a, err := netip.ParseAddr(s)
	if err != nil {
		return field.ErrorList{field.Invalid(p, s, want)}
	}
	if a.Zone() != "" {
		return field.ErrorList{field.Invalid(p, s, want+", without a zone (%"+a.Zone()+")")}
	}
	return nil
}

// dnsUpstreamForms is what DNSUpstream takes.
const dnsUpstreamForms = "must be an IPv4 address, an IPv6 address in brackets or a host name, such as 10.96.0.10, [fd00::a] or kube-dns.kube-system.svc.cluster.local"

// DNSUpstream checks an upstream of FSM's local DNS proxy
// (localDNSProxy.primary/secondaryUpstreamDNSServerIPAddr); empty is "not
// set". FSM v1.5.1's controller, the only reader, forwards queries to
// fmt.Sprintf("%s:53", value) (pkg/dns/config.go GetNameservers) and dials
// that: an IPv4 address works, and so does a host name, which its resolver
// looks up; a bare IPv6 address does not, as "fd00::a:53" is no host:port,
// but one in brackets does ("[fd00::a]:53"): the only way to give an IPv6
// cluster's DNS Service by address, so any address in brackets is taken.
func DNSUpstream(p *field.Path, s string) field.ErrorList {
	if s == "" {
		return nil
	}
	if inner, ok := strings.CutPrefix(s, "["); ok {
		if inner, ok = strings.CutSuffix(inner, "]"); ok {
			if _, err := netip.ParseAddr(inner); err == nil {
				return nil
			}
		}
		return field.ErrorList{field.Invalid(p, s, dnsUpstreamForms)}
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Is4() {
			return nil
		}
		return field.ErrorList{field.Invalid(p, s, `FSM's DNS proxy forwards to "<value>:53", which for an IPv6 address is not an address and port: write it in brackets, [`+s+`]`)}
	}
	// A name whose last label is all digits ("8.8.8") is no host name
	// (RFC 3696 2): it is an address with a part missing.
	name := strings.TrimSuffix(s, ".")
	last := name[strings.LastIndexByte(name, '.')+1:]
	if name == "" || strings.Trim(last, "0123456789") == "" || len(validation.IsDNS1123Subdomain(strings.ToLower(name))) > 0 {
		return field.ErrorList{field.Invalid(p, s, dnsUpstreamForms)}
	}
	return nil
}

// Duration parses s with time.ParseDuration; empty is "not set". A negative
// duration is never meaningful for these fields.
func Duration(p *field.Path, s string) field.ErrorList {
	_, errs := duration(p, s)
	return errs
}

// PositiveDuration is Duration that also rejects zero.
func PositiveDuration(p *field.Path, s string) field.ErrorList {
	d, errs := duration(p, s)
	if len(errs) == 0 && s != "" && d == 0 {
		errs = field.ErrorList{field.Invalid(p, s, "must be longer than 0s")}
	}
	return errs
}

func duration(p *field.Path, s string) (time.Duration, field.ErrorList) {
	if s == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, field.ErrorList{field.Invalid(p, s, "must be a duration such as 90s, 1m30s or 24h")}
	}
	if d < 0 {
		return 0, field.ErrorList{field.Invalid(p, s, "must not be negative")}
	}
	return d, nil
}

// Fraction parses s as a number in [0,1]; empty is "not set".
func Fraction(p *field.Path, s string) field.ErrorList {
	if s == "" {
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1 || f != f {
		return field.ErrorList{field.Invalid(p, s, "must be a number between 0 and 1, such as 0.5")}
	}
	return nil
}

// NamesUniqueNonEmpty checks a list of names: no empty entry, no duplicate.
func NamesUniqueNonEmpty(p *field.Path, vs []string) field.ErrorList {
	var errs field.ErrorList
	seen := make(map[string]struct{}, len(vs))
	for i, v := range vs {
		if strings.TrimSpace(v) == "" {
			errs = append(errs, field.Invalid(p.Index(i), v, "must be a non-empty name"))
			continue
		}
		if _, dup := seen[v]; dup {
			errs = append(errs, field.Duplicate(p.Index(i), v))
			continue
		}
		seen[v] = struct{}{}
	}
	return errs
}
