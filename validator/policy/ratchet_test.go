package policy

import (
	"strings"
	"testing"
)

// TestRatchetIdentity: on UPDATE a finding only warns when the stored object
// has the same one (message, severity and key), counted as a multiset. FSM's
// messages that omit the bad value are told apart by their key, so a
// changed or an extra problem denies; elements are keyed by content, so
// reordering a list or adding a valid entry keeps a stored problem stored.
func TestRatchetIdentity(t *testing.T) {
	ib := func(backends, sources string) string {
		return `{"metadata":{"name":"ib","namespace":"ns"},"spec":{"backends":` + backends + `,"sources":` + sources + `}}`
	}
	const web = `[{"name":"web","port":{"number":80,"protocol":"http"}}]`
	const (
		mtlsA = `{"name":"a","port":{"number":443,"protocol":"https"},"tls":{"skipClientCertValidation":false}}`
		mtlsB = `{"name":"b","port":{"number":8443,"protocol":"https"},"tls":{"skipClientCertValidation":false}}`
	)
	egress := func(matches string) string {
		return `{"metadata":{"name":"e","namespace":"ns"},"spec":{"matches":` + matches + `}}`
	}
	const uts = `{"apiGroup":"policy.flomesh.io/v1alpha1","kind":"UpstreamTrafficSetting","name":`
	ust := func(spec string) string {
		return `{"metadata":{"name":"u","namespace":"ns"},"spec":{"host":"web.ns.svc.cluster.local",` + spec + `}}`
	}
	plugin := func(meta, spec string) string {
		return `{"metadata":{"name":"p"` + meta + `},"spec":` + spec + `}`
	}

	cases := []struct {
		name, kind string
		old, obj   string
		wantDenied bool
		wantStored int // warnings "(already stored ...)"
	}{
		// IngressBackend sources: FSM's messages name neither source nor kind.
		{name: "bad source kind unchanged", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"}]`), obj: ib(web, `[{"kind":"Pod","name":"a"}]`), wantStored: 1},
		{name: "bad source kind changed", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"}]`), obj: ib(web, `[{"kind":"Deployment","name":"a"}]`), wantDenied: true},
		{name: "second bad source added", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Service","name":"a"}]`), obj: ib(web, `[{"kind":"Service","name":"a"},{"kind":"Service","name":"b"}]`),
			wantDenied: true, wantStored: 1},
		{name: "bad source replaced by another", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Service","name":"a"}]`), obj: ib(web, `[{"kind":"Service","name":"evil"}]`), wantDenied: true},
		{name: "identical bad source repeated: a second copy is new", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"}]`), obj: ib(web, `[{"kind":"Pod","name":"a"},{"kind":"Pod","name":"a"}]`),
			wantDenied: true, wantStored: 1},
		{name: "bad sources reordered", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"},{"kind":"Service","name":"b"}]`),
			obj: ib(web, `[{"kind":"Service","name":"b"},{"kind":"Pod","name":"a"}]`), wantStored: 2},
		{name: "valid source inserted before a bad one", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"}]`),
			obj: ib(web, `[{"kind":"IPRange","name":"10.0.0.0/8"},{"kind":"Pod","name":"a"}]`), wantStored: 1},
		{name: "one of two bad sources fixed", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"Pod","name":"a"},{"kind":"Pod","name":"b"}]`), obj: ib(web, `[{"kind":"Pod","name":"b"}]`), wantStored: 1},
		{name: "bad IPRange unchanged", kind: KindIngressBackend,
			old: ib(web, `[{"kind":"IPRange","name":"10.0.0.1"}]`), obj: ib(web, `[{"kind":"IPRange","name":"10.0.0.1"}]`), wantStored: 1},
		// The protocol message names the protocol, not the backend.
		{name: "bad protocol moved to another backend", kind: KindIngressBackend,
			old:        ib(`[{"name":"a","port":{"number":80,"protocol":"tcp"}},{"name":"b","port":{"number":81,"protocol":"http"}}]`, `[]`),
			obj:        ib(`[{"name":"a","port":{"number":80,"protocol":"http"}},{"name":"b","port":{"number":81,"protocol":"tcp"}}]`, `[]`),
			wantDenied: true},
		{name: "bad protocol kept, valid backend added", kind: KindIngressBackend,
			old:        ib(`[{"name":"a","port":{"number":80,"protocol":"tcp"}}]`, `[]`),
			obj:        ib(`[{"name":"b","port":{"number":81,"protocol":"http"}},{"name":"a","port":{"number":80,"protocol":"tcp"}}]`, `[]`),
			wantStored: 1},
		// The https client-certificate rule is reported once for every
		// backend it concerns and names none of them.
		{name: "https backend without a principal unchanged", kind: KindIngressBackend,
			old: ib(`[`+mtlsA+`]`, `[]`), obj: ib(`[`+mtlsA+`]`, `[]`), wantStored: 1},
		{name: "second https backend without a principal added", kind: KindIngressBackend,
			old: ib(`[`+mtlsA+`]`, `[]`), obj: ib(`[`+mtlsA+`,`+mtlsB+`]`, `[]`), wantDenied: true},
		{name: "https backend without a principal replaced by another", kind: KindIngressBackend,
			old: ib(`[`+mtlsA+`]`, `[]`), obj: ib(`[`+mtlsB+`]`, `[]`), wantDenied: true},
		{name: "one of two https backends without a principal removed", kind: KindIngressBackend,
			old: ib(`[`+mtlsA+`,`+mtlsB+`]`, `[]`), obj: ib(`[`+mtlsB+`]`, `[]`), wantStored: 1},

		// Egress: the apiGroup message names neither match nor kind; the
		// UpstreamTrafficSetting count names no match.
		{name: "bad apiGroup moved to another match", kind: KindEgress,
			old: egress(`[{"apiGroup":"x.io/v1","kind":"K","name":"a"}]`), obj: egress(`[{"apiGroup":"x.io/v1","kind":"K","name":"b"}]`),
			wantDenied: true},
		{name: "two UpstreamTrafficSetting matches reordered", kind: KindEgress,
			old: egress(`[` + uts + `"a"},` + uts + `"b"}]`), obj: egress(`[` + uts + `"b"},` + uts + `"a"}]`), wantStored: 1},
		{name: "third UpstreamTrafficSetting match added", kind: KindEgress,
			old: egress(`[` + uts + `"a"},` + uts + `"b"}]`), obj: egress(`[` + uts + `"a"},` + uts + `"b"},` + uts + `"c"}]`),
			wantDenied: true},
		{name: "UpstreamTrafficSetting match swapped", kind: KindEgress,
			old: egress(`[` + uts + `"a"},` + uts + `"b"}]`), obj: egress(`[` + uts + `"a"},` + uts + `"c"}]`), wantDenied: true},

		// UpstreamTrafficSetting (strict): the status code message names no place.
		{name: "bad status code moved from the host to a route", kind: KindUpstreamTrafficSetting,
			old: ust(`"rateLimit":{"local":{"http":{"responseStatusCode":999}}}`),
			obj: ust(`"httpRoutes":[{"path":"/","rateLimit":{"local":{"responseStatusCode":999}}}]`), wantDenied: true},
		{name: "bad status code on a route, routes reordered", kind: KindUpstreamTrafficSetting,
			old: ust(`"httpRoutes":[{"path":"/a","rateLimit":{"local":{"responseStatusCode":999}}},{"path":"/b"}]`),
			obj: ust(`"httpRoutes":[{"path":"/b"},{"path":"/a","rateLimit":{"local":{"responseStatusCode":999}}}]`), wantStored: 1},

		// The plugin gate (policy off) ratchets only while the spec is unchanged.
		{name: "Plugin: metadata edited, spec unchanged", kind: KindPlugin,
			old: plugin(`,"finalizers":["f"]`, `{"pipyscript":"pipy()"}`), obj: plugin(`,"labels":{"a":"b"}`, `{"pipyscript":"pipy()"}`),
			wantStored: 1},
		{name: "Plugin: same spec serialized otherwise", kind: KindPlugin,
			old: plugin(``, `{"pipyscript":"pipy()","priority":1}`), obj: plugin(``, `{ "priority" : 1, "pipyscript" : "pipy()" }`),
			wantStored: 1},
		{name: "Plugin: script replaced", kind: KindPlugin,
			old: plugin(``, `{"pipyscript":"pipy()"}`), obj: plugin(``, `{"pipyscript":"pipy().pipeline()"}`), wantDenied: true},
		{name: "Plugin: other spec field changed", kind: KindPlugin,
			old: plugin(``, `{"pipyscript":"pipy()","priority":1}`), obj: plugin(``, `{"pipyscript":"pipy()","priority":2}`), wantDenied: true},
		// Numbers as written: as float64 these two are the same value.
		{name: "Plugin: large number changed beyond float precision", kind: KindPlugin,
			old: plugin(``, `{"pipyscript":"pipy()","priority":9007199254740993}`), obj: plugin(``, `{"pipyscript":"pipy()","priority":9007199254740992}`), wantDenied: true},
		{name: "PluginChain: spec changed", kind: KindPluginChain,
			old: plugin(``, `{"chains":[]}`), obj: plugin(``, `{"chains":[{"name":"inbound-http"}]}`), wantDenied: true},
		{name: "PluginConfig without spec: finalizer removed", kind: KindPluginConfig,
			old: `{"metadata":{"name":"c","finalizers":["f"]}}`, obj: `{"metadata":{"name":"c"}}`, wantStored: 1},
		{name: "PluginConfig: spec added", kind: KindPluginConfig,
			old: `{"metadata":{"name":"c"}}`, obj: `{"metadata":{"name":"c"},"spec":{"config":{}}}`, wantDenied: true},

		// The AccessCert gate (policy off, strict) likewise.
		{name: "AccessCert: label added, spec unchanged", kind: KindAccessCert,
			old: `{"metadata":{"name":"a"},"spec":{"subjectAltNames":["x.example"]}}`,
			obj: `{"metadata":{"name":"a","labels":{"a":"b"}},"spec":{"subjectAltNames":["x.example"]}}`, wantStored: 1},
		{name: "AccessCert: another certificate asked for", kind: KindAccessCert,
			old: `{"metadata":{"name":"a"},"spec":{"subjectAltNames":["x.example"]}}`,
			obj: `{"metadata":{"name":"a"},"spec":{"subjectAltNames":["evil.example"]}}`, wantDenied: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// Strict, so BeyondFSM findings deny as FSM's own do.
			v := Decide(findingsOf(t, tc.kind, tc.obj), findingsOf(t, tc.kind, tc.old), true)
			stored := 0
			for _, w := range v.Warnings {
				if strings.HasSuffix(w, " (already stored: allowed unchanged, please fix)") {
					stored++
				}
			}
			if (len(v.Denials) > 0) != tc.wantDenied || stored != tc.wantStored {
				t.Errorf("denials %q, warnings %q; want denied %v, %d stored", v.Denials, v.Warnings, tc.wantDenied, tc.wantStored)
			}
		})
	}
}

// TestRatchetConflicts: FSM's conflict report names each conflicting policy
// and service but no port, and grows or shrinks with the conflicts. A
// conflict the stored object had, alone or among fewer, only warns; a new
// one, or one moved to another port, denies.
func TestRatchetConflicts(t *testing.T) {
	others := []BackendPolicy{
		*decodeT[BackendPolicy](t, `{"metadata":{"name":"first","namespace":"ns"},"spec":{"backends":[`+
			`{"name":"web","port":{"number":80,"protocol":"http"}},{"name":"web","port":{"number":81,"protocol":"http"}}]}}`),
		*decodeT[BackendPolicy](t, `{"metadata":{"name":"third","namespace":"ns"},"spec":{"backends":[`+
			`{"name":"api","port":{"number":90,"protocol":"http"}}]}}`),
	}
	second := func(backends ...string) []Finding {
		var bs []string
		for _, b := range backends {
			name, port, _ := strings.Cut(b, ":")
			bs = append(bs, `{"name":"`+name+`","port":{"number":`+port+`,"protocol":"http"}}`)
		}
		return ValidateIngressBackend(decodeT[BackendPolicy](t, `{"metadata":{"name":"second","namespace":"ns"},"spec":{"backends":[`+
			strings.Join(bs, ",")+`]}}`), others)
	}
	cases := []struct {
		name       string
		old, obj   []Finding
		wantDenied bool
	}{
		{name: "unchanged", old: second("web:80"), obj: second("web:80")},
		{name: "moved to another port of the same service", old: second("web:80"), obj: second("web:81"), wantDenied: true},
		{name: "a conflict with another policy added", old: second("web:80"), obj: second("web:80", "api:90"), wantDenied: true},
		{name: "one of two conflicts resolved", old: second("web:80", "api:90"), obj: second("api:90")},
		{name: "a valid backend added", old: second("web:80"), obj: second("web:80", "db:5432")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.old) == 0 || len(tc.obj) == 0 {
				t.Fatalf("both versions must conflict: old %v, new %v", tc.old, tc.obj)
			}
			v := Decide(tc.obj, tc.old, true)
			if (len(v.Denials) > 0) != tc.wantDenied || len(v.Warnings) != 1-len(v.Denials) {
				t.Errorf("denials %q, warnings %q; want denied %v", v.Denials, v.Warnings, tc.wantDenied)
			}
		})
	}
}

// findingsOf validates js as kind, with plugin and access-cert policy off and no other
// objects in the namespace.
func findingsOf(t *testing.T, kind, js string) []Finding {
	t.Helper()
	switch kind {
	case KindIngressBackend:
		return ValidateIngressBackend(decodeT[BackendPolicy](t, js), nil)
	case KindEgress:
		return ValidateEgress(decodeT[Egress](t, js))
	case KindUpstreamTrafficSetting:
		return ValidateUpstreamTrafficSetting(decodeT[UpstreamTrafficSetting](t, js), nil)
	case KindPlugin:
		return ValidatePluginKind(false, decodeT[Plugin](t, js), []byte(js))
	case KindPluginChain, KindPluginConfig:
		return ValidatePluginKind(false, nil, []byte(js))
	case KindAccessCert:
		return ValidateAccessCert(false, []byte(js))
	}
	t.Fatalf("no validator for %s", kind)
	return nil
}

// TestMessagesUnchangedByKeys: keys never reach what users see.
func TestMessagesUnchangedByKeys(t *testing.T) {
	got := ValidateIngressBackend(decodeT[BackendPolicy](t,
		`{"metadata":{"name":"ib","namespace":"ns"},"spec":{"sources":[{"kind":"Pod","name":"a"}]}}`), nil)
	v := Decide(got, nil, false)
	want := "Invalid 'source.kind' value specified. Must be one of: Service, AuthenticatedPrincipal, IPRange"
	if len(v.Denials) != 1 || v.Denials[0] != want || len(v.Warnings) != 0 {
		t.Errorf("denials %q warnings %q; want [%q]", v.Denials, v.Warnings, want)
	}
	v = Decide(got, got, false)
	if len(v.Denials) != 0 || len(v.Warnings) != 1 || v.Warnings[0] != want+" (already stored: allowed unchanged, please fix)" {
		t.Errorf("stored: denials %q warnings %q", v.Denials, v.Warnings)
	}
}
