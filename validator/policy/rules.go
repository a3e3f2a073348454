package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Every function returns all problems found (FSM stops at the first); an
// empty result means valid.

// Finding is one problem a rule found.
type Finding struct {
	// Message is FSM's wording (users search for it); it may span lines.
	Message string
	// BeyondFSM marks a rule FSM v1.5.1 as deployed never applied: its
	// registration does not route the kind (AccessControl,
	// UpstreamTrafficSetting, AccessCert) or a bug skips the rule. Manifests
	// FSM accepted can break such a rule, so the handler only warns about it
	// unless strict policy validation is on.
	BeyondFSM bool
	// Key identifies what the finding is about where Message does not
	// (several of FSM's messages omit the bad value): the offending
	// element's path and content, e.g.
	// sources[kind="Pod",name="a",namespace=""]. Used only for ratcheting,
	// never shown. Elements are named by content, not index, so reordering
	// a list or adding a valid entry keeps a stored problem stored.
	Key string
	// Parts, set for a rule reported once for several offending elements
	// (the conflict report, the https client-certificate rule), are those
	// elements by content; Key then names the rule. Its message changes as
	// elements come and go, so ratcheting compares Parts instead: fixing
	// some keeps the finding stored, adding or changing one makes it new.
	Parts []string
}

// SameFinding reports whether found is a problem the stored object already
// had (stored, one of its findings), for ratcheting an UPDATE: same
// severity and offending element (key), and the same message or, for a
// finding with Parts, no part the stored one lacks.
func SameFinding(stored, found Finding) bool {
	if stored.BeyondFSM != found.BeyondFSM || stored.Key != found.Key {
		return false
	}
	if found.Parts == nil && stored.Parts == nil {
		return stored.Message == found.Message
	}
	// A set: a conflicts finding has a part per shared backend of every
	// other policy, tens of thousands in a large namespace.
	had := make(map[string]bool, len(stored.Parts))
	for _, p := range stored.Parts {
		had[p] = true
	}
	for _, p := range found.Parts {
		if !had[p] {
			return false
		}
	}
	return len(found.Parts) > 0
}

// findingKey is equal for two findings SameFinding finds the same
// (ratchet.Split's key).
func findingKey(f Finding) string {
	k := fmt.Sprintf("%t\x00%s\x00%t", f.BeyondFSM, f.Key, f.Parts == nil)
	if f.Parts == nil {
		k += "\x00" + f.Message
	}
	return k
}

func fsmEnforced(msgs ...string) []Finding {
	out := make([]Finding, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, Finding{Message: m})
	}
	return out
}

// beyondFSM marks every finding of a kind FSM never routes to its webhook.
func beyondFSM(fs []Finding) []Finding {
	for i := range fs {
		fs[i].BeyondFSM = true
	}
	return fs
}

// ValidateTrafficTarget: the target must live in its destination's namespace.
func ValidateTrafficTarget(t *TrafficTarget) []Finding {
	if t.Spec.Destination.Namespace != t.Metadata.Namespace {
		return fsmEnforced(fmt.Sprintf("The traffic target namespace (%s) must match spec.Destination.Namespace (%s)",
			t.Metadata.Namespace, t.Spec.Destination.Namespace))
	}
	return nil
}

// backendRules words the shared IngressBackend/AccessControl rules.
type backendRules struct {
	conflictNoun  string // "IngressBackend" or "AccessControlBackend"
	mTLSMessage   string
	checkProtocol bool
	// routedByFSM: FSM's registration sends the kind to its webhook
	// (IngressBackend yes, AccessControl no).
	routedByFSM bool
}

var (
	ingressBackendRules = backendRules{
		conflictNoun:  "IngressBackend",
		mTLSMessage:   "HTTPS ingress with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source",
		checkProtocol: true,
		routedByFSM:   true,
	}
	accessControlRules = backendRules{
		conflictNoun: "AccessControlBackend",
		mTLSMessage:  "HTTPS acl with client certificate validation enabled must specify at least one 'AuthenticatedPrincipal' source",
	}
)

// ValidateIngressBackend checks b against FSM's IngressBackend rules. others
// are the IngressBackends already in b's namespace (b itself, by name, is
// skipped). The conflict check and the https client-certificate rule are
// BeyondFSM: FSM's conflict lookup never matches and it applied the
// certificate rule to grpc with the flag inverted, never to https.
func ValidateIngressBackend(b *BackendPolicy, others []BackendPolicy) []Finding {
	return validateBackendPolicy(b, others, ingressBackendRules)
}

// ValidateAccessControl checks a with the IngressBackend rules in
// AccessControl wording, except the protocol set, which FSM leaves open for
// AccessControl. others are the AccessControls in a's namespace. Every
// finding is BeyondFSM: FSM never routes AccessControl to its webhook.
func ValidateAccessControl(a *BackendPolicy, others []BackendPolicy) []Finding {
	return validateBackendPolicy(a, others, accessControlRules)
}

type backendKey struct {
	name string
	port int64
}

func validateBackendPolicy(p *BackendPolicy, others []BackendPolicy, r backendRules) []Finding {
	var fs []Finding
	hasPrincipal := slices.ContainsFunc(p.Spec.Sources, func(s Source) bool { return s.Kind == SourceKindAuthenticatedPrincipal })

	seen := make(map[backendKey]bool, len(p.Spec.Backends))
	mTLS := -1 // index in fs of the client-certificate finding
	for _, b := range p.Spec.Backends {
		k := backendKey{b.Name, b.Port.Number}
		if seen[k] {
			fs = append(fs, Finding{Message: fmt.Sprintf("Duplicate backends detected with service name: %s and port: %d", b.Name, b.Port.Number)})
		}
		seen[k] = true

		proto := strings.ToLower(b.Port.Protocol)
		if r.checkProtocol && proto != "http" && proto != "https" && proto != "grpc" {
			// The message names the protocol, not the backend.
			fs = append(fs, Finding{Message: fmt.Sprintf("Expected 'port.protocol' to be 'http', 'https' or 'grpc', got: %s", b.Port.Protocol),
				Key: fmt.Sprintf("backends[name=%q,port=%d].port.protocol", b.Name, b.Port.Number)})
		}
		// Client certificates are validated unless skipClientCertValidation
		// says otherwise; then only an AuthenticatedPrincipal can match.
		// One message, FSM's grpc rule's (users search for it), however many
		// backends it concerns; they are its parts.
		if proto == "https" && b.TLS != nil && !b.TLS.SkipClientCertValidation && !hasPrincipal {
			part := fmt.Sprintf("%s:%d", b.Name, b.Port.Number)
			if mTLS < 0 {
				mTLS = len(fs)
				fs = append(fs, Finding{Message: r.mTLSMessage, BeyondFSM: true, Key: "https client certificates"})
			}
			fs[mTLS].Parts = append(fs[mTLS].Parts, part)
		}
	}

	if c, parts := conflicts(p, others, seen, r.conflictNoun); c != "" {
		fs = append(fs, Finding{Message: "duplicate backends detected\n" + c, BeyondFSM: true, Key: "conflicts", Parts: parts})
	}
	fs = append(fs, validateSources(p.Spec.Sources)...)
	if !r.routedByFSM {
		return beyondFSM(fs)
	}
	return fs
}

// conflicts lists, in FSM's format, every other policy in the namespace that
// claims one of p's backends (same service name and port). FSM's lines name
// the service but not the port, so parts names each conflict in full.
func conflicts(p *BackendPolicy, others []BackendPolicy, mine map[backendKey]bool, noun string) (report string, parts []string) {
	sorted := slices.Clone(others)
	slices.SortFunc(sorted, func(a, b BackendPolicy) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	ns := p.Metadata.Namespace
	var sb strings.Builder
	for i := range sorted {
		o := &sorted[i]
		if o.Metadata.Name == p.Metadata.Name {
			continue
		}
		var shared []backendKey
		added := map[backendKey]bool{} // not slices.Contains: O(n²) in backends
		for _, b := range o.Spec.Backends {
			k := backendKey{b.Name, b.Port.Number}
			if mine[k] && !added[k] {
				added[k] = true
				shared = append(shared, k)
			}
		}
		if len(shared) == 0 {
			continue
		}
		slices.SortFunc(shared, func(a, b backendKey) int {
			return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.port, b.port))
		})
		fmt.Fprintf(&sb, "[+] %s %s/%s conflicts with %s/%s:\n", noun, ns, p.Metadata.Name, ns, o.Metadata.Name)
		for _, k := range shared {
			fmt.Fprintf(&sb, "Backend %s specified in %s and %s conflicts\n", k.name, p.Metadata.Name, o.Metadata.Name)
			parts = append(parts, fmt.Sprintf("%s %s:%d", o.Metadata.Name, k.name, k.port))
		}
		sb.WriteString("\n")
	}
	return sb.String(), parts
}

// validateSources: FSM's source messages name neither the source nor, for
// a bad kind, the kind, so each finding is keyed by its source.
func validateSources(sources []Source) []Finding {
	var fs []Finding
	for _, s := range sources {
		key := fmt.Sprintf("sources[kind=%q,name=%q,namespace=%q]", s.Kind, s.Name, s.Namespace)
		add := func(msg string) { fs = append(fs, Finding{Message: msg, Key: key}) }
		switch s.Kind {
		case SourceKindService:
			if s.Name == "" {
				add("'source.name' not specified for source kind Service")
			}
			if s.Namespace == "" {
				add("'source.namespace' not specified for source kind Service")
			}
		case SourceKindAuthenticatedPrincipal:
			if s.Name == "" {
				add("'source.name' not specified for source kind AuthenticatedPrincipal")
			}
		case SourceKindIPRange:
			// net.ParseCIDR, as FSM: it accepts what netip.ParsePrefix
			// refuses (a prefix length with leading zeros, "10.0.0.0/08"),
			// and a source FSM admitted must stay admitted.
			if _, _, err := net.ParseCIDR(s.Name); err != nil {
				add(fmt.Sprintf("Invalid 'source.name' value specified for IPRange. Expected CIDR notation 'a.b.c.d/x', got '%s'", s.Name))
			}
		default:
			add("Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange")
		}
	}
	return fs
}

// ValidateEgress checks the match references of an Egress policy.
// A match without apiGroup crashes FSM's handler, so FSM as deployed
// refuses it too (failurePolicy Fail): every finding is enforced.
func ValidateEgress(e *Egress) []Finding {
	var fs []Finding
	var utsMatches []string
	for _, m := range e.Spec.Matches {
		group := "<unset>"
		if m.APIGroup != nil {
			group = *m.APIGroup
		}
		// The apiGroup message names neither the match nor its kind.
		key := fmt.Sprintf("matches[apiGroup=%q,kind=%q,name=%q]", group, m.Kind, m.Name)
		add := func(msg string) { fs = append(fs, Finding{Message: msg, Key: key}) }
		switch group {
		case SpecsGroupVersion:
			if m.Kind != KindHTTPRouteGroup {
				add(fmt.Sprintf("Expected 'matches.kind' for match '%s' to be 'HTTPRouteGroup', got: %s", m.Name, m.Kind))
			}
		case PolicyGroupVersion:
			if m.Kind != KindUpstreamTrafficSetting {
				add(fmt.Sprintf("Expected 'matches.kind' for match '%s' to be 'UpstreamTrafficSetting', got: %s", m.Name, m.Kind))
			} else {
				utsMatches = append(utsMatches, m.Name)
			}
		default:
			add(fmt.Sprintf("Expected 'matches.apiGroup' to be one of [%s %s], got: %s", SpecsGroupVersion, PolicyGroupVersion, group))
		}
	}
	if len(utsMatches) > 1 {
		// Keyed by the matches, sorted: adding or swapping one is a new
		// problem, reordering them is not.
		slices.Sort(utsMatches)
		fs = append(fs, Finding{Message: "Cannot have more than 1 UpstreamTrafficSetting match",
			Key: fmt.Sprintf("matches[kind=%q]=%q", KindUpstreamTrafficSetting, utsMatches)})
	}
	return fs
}

// ValidateUpstreamTrafficSetting checks u. others are the
// UpstreamTrafficSettings in u's namespace (u itself, by name, is skipped).
// Every finding is BeyondFSM: FSM never routes the kind to its webhook.
func ValidateUpstreamTrafficSetting(u *UpstreamTrafficSetting, others []UpstreamTrafficSetting) []Finding {
	var msgs []string
	host := u.Spec.Host
	// FSM requires at least two labels; empty labels ("a..b", "svc.") are
	// never a resolvable host either.
	labels := strings.Split(host, ".")
	if len(labels) < 2 || slices.Contains(labels, "") || strings.ContainsAny(host, " \t/:") {
		msgs = append(msgs, field.Invalid(field.NewPath("spec", "host"), host, "invalid FQDN specified as host").Error())
	}
	sorted := slices.Clone(others)
	slices.SortFunc(sorted, func(a, b UpstreamTrafficSetting) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	for _, o := range sorted {
		if o.Metadata.Name != u.Metadata.Name && o.Spec.Host == host {
			ns := u.Metadata.Namespace
			msgs = append(msgs, fmt.Sprintf("UpstreamTrafficSetting %s/%s conflicts with %s/%s since they have the same host %s",
				ns, u.Metadata.Name, ns, o.Metadata.Name, host))
			break
		}
	}
	fs := fsmEnforced(msgs...)
	// The status code message names the code, not where it is set.
	keyed := func(msgs []string, key string) {
		for _, m := range msgs {
			fs = append(fs, Finding{Message: m, Key: key})
		}
	}
	if rl := u.Spec.RateLimit; rl != nil && rl.Local != nil && rl.Local.HTTP != nil {
		keyed(statusCode(rl.Local.HTTP.ResponseStatusCode), "rateLimit.local.http.responseStatusCode")
	}
	for _, r := range u.Spec.HTTPRoutes {
		if r.RateLimit != nil && r.RateLimit.Local != nil {
			keyed(statusCode(r.RateLimit.Local.ResponseStatusCode), fmt.Sprintf("httpRoutes[path=%q].rateLimit.local.responseStatusCode", r.Path))
		}
	}
	return beyondFSM(fs)
}

// statusCode accepts 0 (use the default, 429) and registered HTTP statuses.
// Go's StatusText knows 418, which IANA lists as unused (RFC 9110 15.5.19)
// and FSM's handler lacks.
func statusCode(code int64) []string {
	if code == 0 || (code >= 100 && code <= 599 && code != http.StatusTeapot && http.StatusText(int(code)) != "") {
		return nil
	}
	return []string{fmt.Sprintf("invalid responseStatusCode %d", code)}
}

// ValidateEgressGateway: only one EgressGateway in the cluster may define
// global gateways. others are all EgressGateways in the cluster.
func ValidateEgressGateway(g *EgressGateway, others []EgressGateway) []Finding {
	if len(g.Spec.Global) == 0 {
		return nil
	}
	sorted := slices.Clone(others)
	slices.SortFunc(sorted, func(a, b EgressGateway) int {
		return cmp.Or(cmp.Compare(a.Metadata.Namespace, b.Metadata.Namespace), cmp.Compare(a.Metadata.Name, b.Metadata.Name))
	})
	for _, o := range sorted {
		if strings.EqualFold(o.Metadata.Name, g.Metadata.Name) && strings.EqualFold(o.Metadata.Namespace, g.Metadata.Namespace) {
			continue
		}
		if len(o.Spec.Global) > 0 {
			return fsmEnforced(fmt.Sprintf("Redefinition of global egress gateway policy and conflict with %s.%s", o.Metadata.Namespace, o.Metadata.Name))
		}
	}
	return nil
}

// Feature-gate messages (FSM).
const (
	PluginPolicyDisabled     = "FSM is prohibited to apply plugin policy"
	AccessCertPolicyDisabled = "FSM is prohibited to issue certificates for external services"
)

// ValidatePluginKind covers Plugin, PluginChain and PluginConfig: the mesh
// must enable plugin policy, and a Plugin needs spec.pipyscript. p is nil for
// PluginChain and PluginConfig; raw is the object as sent. Plugin is
// cluster-scoped, so its namespace is empty and the message reads
// plugin[<name>.], as FSM's does.
//
// The gate is the mesh's setting, not a problem of the object, so its
// finding is keyed by the spec: on UPDATE it ratchets only while the spec is
// unchanged (metadata edits, such as removing a finalizer, stay possible),
// and a changed spec is denied as FSM denies it.
func ValidatePluginKind(pluginPolicyEnabled bool, p *Plugin, raw []byte) []Finding {
	if !pluginPolicyEnabled {
		return []Finding{{Message: PluginPolicyDisabled, Key: specKey(raw)}}
	}
	if p == nil {
		return nil
	}
	missing := Finding{Message: fmt.Sprintf("plugin[%s.%s] is missing pipy script", p.Metadata.Name, p.Metadata.Namespace)}
	switch {
	case p.Spec.PipyScript == "":
		return []Finding{missing}
	case strings.TrimSpace(p.Spec.PipyScript) == "":
		// FSM only refuses an empty script; blank is as useless. FSM's
		// words, then why: the field is there, holding only whitespace.
		missing.BeyondFSM = true
		missing.Message += ": spec.pipyscript holds only whitespace"
		return []Finding{missing}
	}
	return nil
}

// specKey identifies the spec of raw by content: decoded and re-encoded (keys
// sorted, numbers as written), so the same spec serialized another way
// matches, and hashed to keep the key short (a pipy script can be long). An
// undecodable object is keyed by its bytes.
func specKey(raw []byte) string {
	canonical := raw
	var obj struct {
		Spec json.RawMessage `json:"spec"`
	}
	if json.Unmarshal(raw, &obj) == nil {
		dec := json.NewDecoder(bytes.NewReader(obj.Spec))
		dec.UseNumber()
		var spec any
		if dec.Decode(&spec) == nil || len(obj.Spec) == 0 {
			if b, err := json.Marshal(spec); err == nil {
				canonical = b
			}
		}
	}
	sum := sha256.Sum256(canonical)
	return "spec sha256=" + hex.EncodeToString(sum[:])
}

// ValidateAccessCert: the mesh must enable access-cert policy. BeyondFSM:
// FSM never routes AccessCert to its webhook. raw is the object as sent: the
// gate is keyed by its spec, as the plugin gate is, so a stored AccessCert's
// metadata stays editable while a changed spec (another certificate asked
// for) is judged anew.
func ValidateAccessCert(accessCertPolicyEnabled bool, raw []byte) []Finding {
	if !accessCertPolicyEnabled {
		return []Finding{{Message: AccessCertPolicyDisabled, BeyondFSM: true, Key: specKey(raw)}}
	}
	return nil
}
