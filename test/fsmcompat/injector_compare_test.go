package fsmcompat

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
)

// absent stands for a field one side does not have.
type absentValue struct{}

func (absentValue) String() string { return "(absent)" }

var absent = absentValue{}

// anyValue in an allowance matches every value, absent included.
type anyValueT struct{}

var anyValue = anyValueT{}

// difference is one leaf where FSM's object and ours disagree. Paths use
// `[name]` for the element of a list of named items and `[i]` otherwise.
type difference struct {
	path      string
	fsm, ours any
}

func (d difference) String() string {
	return fmt.Sprintf("%s:\n      FSM:  %s\n      ours: %s", d.path, show(d.fsm), show(d.ours))
}

func show(v any) string {
	if v == absent {
		return "(absent)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	const max = 400
	if len(b) > max {
		return string(b[:max]) + "…"
	}
	return string(b)
}

// matcher in an allowance accepts the values it returns true for.
type matcher func(any) bool

// allowance is one difference we keep on purpose; fsm and ours are the
// values on each side (decoded JSON: numbers are float64), anyValue, absent
// or a matcher.
type allowance struct {
	path      *regexp.Regexp
	fsm, ours any
	why       string
}

func (a allowance) allows(d difference) bool {
	match := func(want, got any) bool {
		if m, ok := want.(matcher); ok {
			return m(got)
		}
		return want == anyValue || reflect.DeepEqual(want, got)
	}
	return a.path.MatchString(d.path) && match(a.fsm, d.fsm) && match(a.ours, d.ours)
}

// unexpected are the differences no allowance covers; used, when not nil,
// records which allowances covered one.
func unexpected(diffs []difference, allowed []allowance, used []bool) []difference {
	var out []difference
	for _, d := range diffs {
		i := slices.IndexFunc(allowed, func(a allowance) bool { return a.allows(d) })
		switch {
		case i < 0:
			out = append(out, d)
		case used != nil:
			used[i] = true
		}
	}
	return out
}

// generic is v as decoded JSON (maps, slices, float64, string, bool, nil).
func generic(t *testing.T, v any) any {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var g any
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

// diffJSON compares two decoded JSON values field by field. Lists whose
// elements all carry a distinct "name" are matched by name, and the order of
// the names both sides have is compared too (path "<list> (order)").
func diffJSON(path string, fsm, ours any) []difference {
	var out []difference
	switch f := fsm.(type) {
	case map[string]any:
		o, ok := ours.(map[string]any)
		if !ok {
			return []difference{{path, fsm, ours}}
		}
		keys := make([]string, 0, len(f)+len(o))
		for k := range f {
			keys = append(keys, k)
		}
		for k := range o {
			if _, ok := f[k]; !ok {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			fv, fok := f[k]
			ov, ook := o[k]
			child := joinPath(path, k)
			switch {
			case !fok:
				out = append(out, difference{child, absent, ov})
			case !ook:
				out = append(out, difference{child, fv, absent})
			default:
				out = append(out, diffJSON(child, fv, ov)...)
			}
		}
	case []any:
		o, ok := ours.([]any)
		if !ok {
			return []difference{{path, fsm, ours}}
		}
		fn, fok := names(f)
		on, ook := names(o)
		if !fok || !ook {
			for i := 0; i < max(len(f), len(o)); i++ {
				child := fmt.Sprintf("%s[%d]", path, i)
				switch {
				case i >= len(f):
					out = append(out, difference{child, absent, o[i]})
				case i >= len(o):
					out = append(out, difference{child, f[i], absent})
				default:
					out = append(out, diffJSON(child, f[i], o[i])...)
				}
			}
			return out
		}
		var commonF, commonO []string
		for i, n := range fn {
			child := path + "[" + n + "]"
			if j := slices.Index(on, n); j >= 0 {
				commonF = append(commonF, n)
				out = append(out, diffJSON(child, f[i], o[j])...)
			} else {
				out = append(out, difference{child, f[i], absent})
			}
		}
		for j, n := range on {
			if slices.Contains(fn, n) {
				commonO = append(commonO, n)
			} else {
				out = append(out, difference{path + "[" + n + "]", absent, o[j]})
			}
		}
		if !slices.Equal(commonF, commonO) {
			out = append(out, difference{path + " (order)", commonF, commonO})
		}
	default:
		if !reflect.DeepEqual(fsm, ours) {
			out = append(out, difference{path, fsm, ours})
		}
	}
	return out
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// names are the elements' distinct "name" fields, if every element has one.
func names(list []any) ([]string, bool) {
	out := make([]string, 0, len(list))
	for _, e := range list {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, false
		}
		n, ok := m["name"].(string)
		if !ok || n == "" || slices.Contains(out, n) {
			return nil, false
		}
		out = append(out, n)
	}
	return out, len(out) > 0
}

// certFacts are the facts the corpus records about a PEM certificate bundle
// (its first certificate), in its field names.
func certFacts(t *testing.T, bundle []byte) (map[string]any, []*x509.Certificate) {
	t.Helper()
	var certsIn []*x509.Certificate
	for rest := bundle; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatalf("parsing certificate: %v", err)
		}
		certsIn = append(certsIn, c)
	}
	if len(certsIn) == 0 {
		t.Fatalf("no certificate in %q", bundle)
	}
	c := certsIn[0]
	ips, uris := []string{}, []string{}
	for _, ip := range c.IPAddresses {
		ips = append(ips, ip.String())
	}
	for _, u := range c.URIs {
		uris = append(uris, u.String())
	}
	return map[string]any{
		"pemBlocks":          len(certsIn),
		"subject":            c.Subject.String(),
		"commonName":         c.Subject.CommonName,
		"organization":       orEmpty(c.Subject.Organization),
		"dnsSANs":            orEmpty(c.DNSNames),
		"ipSANs":             ips,
		"uriSANs":            uris,
		"validity":           c.NotAfter.Sub(c.NotBefore).String(),
		"publicKey":          keyName(c.PublicKey),
		"signatureAlgorithm": c.SignatureAlgorithm.String(),
		"keyUsage":           keyUsages(c.KeyUsage),
		"extKeyUsage":        extKeyUsages(c.ExtKeyUsage),
		"isCA":               c.IsCA,
		"issuer":             c.Issuer.String(),
		"hasSubjectKeyId":    len(c.SubjectKeyId) > 0,
		"hasAuthorityKeyId":  len(c.AuthorityKeyId) > 0,
	}, certsIn
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// keyFacts describe a PEM private key and whether it belongs to cert.
func keyFacts(t *testing.T, keyPEM []byte, cert *x509.Certificate) map[string]any {
	t.Helper()
	b, _ := pem.Decode(keyPEM)
	if b == nil {
		t.Fatalf("repo_key.pem holds no PEM block")
	}
	var (
		key      any
		err      error
		encoding string
	)
	switch b.Type {
	case "PRIVATE KEY":
		encoding = "PKCS#8"
		key, err = x509.ParsePKCS8PrivateKey(b.Bytes)
	case "RSA PRIVATE KEY":
		encoding = "PKCS#1"
		key, err = x509.ParsePKCS1PrivateKey(b.Bytes)
	case "EC PRIVATE KEY":
		encoding = "SEC1"
		key, err = x509.ParseECPrivateKey(b.Bytes)
	default:
		t.Fatalf("repo_key.pem: unexpected PEM type %q", b.Type)
	}
	if err != nil {
		t.Fatalf("repo_key.pem: %v", err)
	}
	signer := key.(crypto.Signer)
	matches := signer.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey)
	return map[string]any{
		"pemType":            b.Type,
		"key":                encoding + " " + keyName(signer.Public()),
		"matchesCertificate": matches,
	}
}

func keyName(pub any) string {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "ECDSA-" + strings.ReplaceAll(k.Curve.Params().Name, "-", "")
	default:
		return fmt.Sprintf("%T", pub)
	}
}

// keyUsages and extKeyUsages are sets: sorted names.
func keyUsages(u x509.KeyUsage) []string {
	all := []struct {
		bit  x509.KeyUsage
		name string
	}{
		{x509.KeyUsageDigitalSignature, "digitalSignature"}, {x509.KeyUsageContentCommitment, "contentCommitment"},
		{x509.KeyUsageKeyEncipherment, "keyEncipherment"}, {x509.KeyUsageDataEncipherment, "dataEncipherment"},
		{x509.KeyUsageKeyAgreement, "keyAgreement"}, {x509.KeyUsageCertSign, "certSign"}, {x509.KeyUsageCRLSign, "crlSign"},
		{x509.KeyUsageEncipherOnly, "encipherOnly"}, {x509.KeyUsageDecipherOnly, "decipherOnly"},
	}
	out := []string{}
	for _, k := range all {
		if u&k.bit != 0 {
			out = append(out, k.name)
		}
	}
	sort.Strings(out)
	return out
}

func extKeyUsages(us []x509.ExtKeyUsage) []string {
	out := []string{}
	for _, u := range us {
		switch u {
		case x509.ExtKeyUsageClientAuth:
			out = append(out, "clientAuth")
		case x509.ExtKeyUsageServerAuth:
			out = append(out, "serverAuth")
		default:
			out = append(out, fmt.Sprintf("eku-%d", u))
		}
	}
	sort.Strings(out)
	return out
}

// natChains is what an `iptables-restore --noflush` script leaves in the nat
// table, starting from empty chains: each chain's rules in order. Rules are
// normalised (whitespace, `--match` = `-m`, a multiport list is a set).
func natChains(script string) (map[string][]string, error) {
	chains := map[string][]string{}
	table := ""
	for _, raw := range strings.Split(script, "\n") {
		line := strings.TrimSpace(raw)
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "iptables-restore") || line == "EOF" || line == "COMMIT":
			continue
		case strings.HasPrefix(line, "*"):
			table = line[1:]
			continue
		}
		if table != "nat" {
			return nil, fmt.Errorf("rule outside the nat table: %q", line)
		}
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(f[0], ":"):
			declare(chains, f[0][1:])
		case f[0] == "-N" && len(f) == 2:
			declare(chains, f[1])
		case (f[0] == "-A" || f[0] == "-I") && len(f) > 2:
			rule := normaliseRule(f[2:])
			if f[0] == "-A" {
				chains[f[1]] = append(chains[f[1]], rule)
			} else {
				// -I CHAIN [pos]: position 1 unless a number follows.
				pos, rest := 1, f[2:]
				if _, err := fmt.Sscanf(rest[0], "%d", &pos); err == nil && len(rest) > 1 {
					rule = normaliseRule(rest[1:])
				}
				if pos < 1 || pos-1 > len(chains[f[1]]) {
					return nil, fmt.Errorf("%q: position out of range", line)
				}
				chains[f[1]] = slices.Insert(chains[f[1]], pos-1, rule)
			}
		default:
			return nil, fmt.Errorf("unsupported iptables-restore line %q", line)
		}
	}
	return chains, nil
}

// scriptFrame is the shell around the rules of an fsm-init script: the
// lines natChains skips (the iptables-restore command with its heredoc
// opener, the heredoc's end). They are compared as text: `--noflush` keeps
// the nat table's other rules, and an unquoted `<<EOF` lets the shell expand
// $POD_IP in the localProxyMode PodIP rule (`<<'EOF'` hands iptables-restore
// the literal "$POD_IP", which it refuses, and the pod never starts).
func scriptFrame(script string) []string {
	var out []string
	for _, raw := range strings.Split(script, "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "iptables-restore") || strings.HasPrefix(line, "EOF") {
			out = append(out, line)
		}
	}
	return out
}

func normaliseRule(f []string) string {
	out := slices.Clone(f)
	for i := range out {
		if out[i] == "--match" {
			out[i] = "-m"
		}
		if (out[i] == "--dports" || out[i] == "--sports") && i+1 < len(out) {
			ports := strings.Split(out[i+1], ",")
			sort.Strings(ports)
			out[i+1] = strings.Join(ports, ",")
		}
	}
	return strings.Join(out, " ")
}

// ruleTarget is a rule's -j target; ruleOut its -o interface.
func ruleTarget(rule string) string { return flagValue(rule, "-j") }
func ruleOut(rule string) string    { return flagValue(rule, "-o") }

func flagValue(rule, flag string) string {
	f := strings.Fields(rule)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == flag && (i == 0 || f[i-1] != "!") {
			return f[i+1]
		}
	}
	return ""
}

// commute reports whether two rules of a chain may swap places without
// changing any packet's fate: the same target (whichever matches first, the
// packet goes to the same place: RETURN, or a redirect chain) or output
// interfaces that no packet has both of.
func commute(a, b string) bool {
	if ruleTarget(a) == ruleTarget(b) {
		return true
	}
	oa, ob := ruleOut(a), ruleOut(b)
	return oa != "" && ob != "" && oa != ob
}

// sameChain reports whether ours orders the same rules as FSM's in a way
// that only swaps commuting rules: every pair that does not commute keeps its
// relative order.
func sameChain(fsm, ours []string) bool {
	if !slices.Equal(sorted(fsm), sorted(ours)) {
		return false
	}
	pos := func(list []string) map[string]int {
		m := map[string]int{}
		for i, r := range list {
			m[r] = i
		}
		return m
	}
	pf, po := pos(fsm), pos(ours)
	if len(pf) != len(fsm) {
		return slices.Equal(fsm, ours) // duplicate rules: insist on the same order
	}
	for i := range fsm {
		for j := i + 1; j < len(fsm); j++ {
			a, b := fsm[i], fsm[j]
			if !commute(a, b) && (pf[a] < pf[b]) != (po[a] < po[b]) {
				return false
			}
		}
	}
	return true
}

func sorted(s []string) []string {
	c := slices.Clone(s)
	sort.Strings(c)
	return c
}

func chainsString(chains map[string][]string) string {
	var b bytes.Buffer
	keys := make([]string, 0, len(chains))
	for k := range chains {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "        %s:\n", k)
		for _, r := range chains[k] {
			fmt.Fprintf(&b, "          %s\n", r)
		}
	}
	return b.String()
}

// TestNatChainComparison: the chain comparison lets only commuting rules
// swap, and -I inserts where iptables does.
func TestNatChainComparison(t *testing.T) {
	script := func(rules ...string) map[string][]string {
		c, err := natChains("*nat\n:X - [0:0]\n" + strings.Join(rules, "\n") + "\nCOMMIT\n")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name      string
		fsm, ours map[string][]string
		same      bool
	}{
		{"identical", script("-A X -p tcp -j A"), script("-A X -p tcp -j A"), true},
		{"-I before -A", script("-A X -d 1.0.0.0/8 -j RETURN", "-I X -d 2.0.0.0/8 -j RETURN"),
			script("-A X -d 2.0.0.0/8 -j RETURN", "-A X -d 1.0.0.0/8 -j RETURN"), true},
		{"RETURN rules swap", script("-A X -d 1.0.0.0/8 -j RETURN", "-A X -d 2.0.0.0/8 -j RETURN"),
			script("-A X -d 2.0.0.0/8 -j RETURN", "-A X -d 1.0.0.0/8 -j RETURN"), true},
		{"disjoint output interfaces swap", script("-A X -o lo -j B", "-A X -o eth1 -j RETURN"),
			script("-A X -o eth1 -j RETURN", "-A X -o lo -j B"), true},
		{"multiport list is a set", script("-A X -p tcp --match multiport --dports 80,443 -j RETURN"),
			script("-A X -p tcp -m multiport --dports 443,80 -j RETURN"), true},
		{"RETURN moved after the redirect", script("-A X -d 1.0.0.0/8 -j RETURN", "-A X -j REDIRECT"),
			script("-A X -j REDIRECT", "-A X -d 1.0.0.0/8 -j RETURN"), false},
		{"rule missing", script("-A X -d 1.0.0.0/8 -j RETURN", "-A X -j REDIRECT"), script("-A X -j REDIRECT"), false},
	} {
		if got := sameChain(tc.fsm["X"], tc.ours["X"]); got != tc.same {
			t.Errorf("%s: sameChain(%q, %q) = %v, want %v", tc.name, tc.fsm["X"], tc.ours["X"], got, tc.same)
		}
	}
}

// TestScriptFrame: the shell around fsm-init's rules is compared as text,
// so a quoted heredoc or a missing --noflush is a difference.
func TestScriptFrame(t *testing.T) {
	const fsm = "iptables-restore --noflush <<EOF\n# FSM sidecar interception rules\n*nat\nCOMMIT\nEOF\n"
	for _, tc := range []struct {
		name, ours string
		same       bool
	}{
		{"FSM's frame, no comment", "iptables-restore --noflush <<EOF\n*nat\nCOMMIT\nEOF\n", true},
		{"quoted heredoc: $POD_IP not expanded", "iptables-restore --noflush <<'EOF'\n*nat\nCOMMIT\nEOF\n", false},
		{"no --noflush", "iptables-restore <<EOF\n*nat\nCOMMIT\nEOF\n", false},
		{"another end marker", "iptables-restore --noflush <<EOF\n*nat\nCOMMIT\nEOF2\n", false},
	} {
		if got := slices.Equal(scriptFrame(fsm), scriptFrame(tc.ours)); got != tc.same {
			t.Errorf("%s: frames %q and %q equal = %v, want %v", tc.name, scriptFrame(fsm), scriptFrame(tc.ours), got, tc.same)
		}
	}
}

// declare records that a chain exists (an empty chain is part of the result)
// without touching rules already appended to it.
func declare(chains map[string][]string, name string) {
	if _, ok := chains[name]; !ok {
		chains[name] = nil
	}
}
