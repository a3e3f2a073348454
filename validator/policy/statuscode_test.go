package policy

import (
	"fmt"
	"testing"
)

// TestResponseStatusCode418Refused: the reference
// (shared/validation-reference.md, UpstreamTrafficSetting row) wants
// "rate-limit responseStatusCode is an IANA HTTP status (or 0)", and FSM
// v1.5.1's handler (pkg/validator/validators.go statusCodeName) has no 418
// either. IANA's registry lists 418 as "(Unused)" (RFC 9110 section
// 15.5.19); Go's http.StatusText knows it as "I'm a teapot", so ours admits
// it, even in strict mode.
func TestResponseStatusCode418Refused(t *testing.T) {
	for _, where := range []string{
		`"rateLimit":{"local":{"http":{"requests":1,"unit":"second","responseStatusCode":418}}}`,
		`"httpRoutes":[{"path":"/","rateLimit":{"local":{"requests":1,"unit":"second","responseStatusCode":418}}}]`,
	} {
		u := decodeT[UpstreamTrafficSetting](t, `{"metadata":{"name":"u","namespace":"ns"},"spec":{"host":"web.ns.svc.cluster.local",`+where+`}}`)
		got := ValidateUpstreamTrafficSetting(u, nil)
		want := beyond(fmt.Sprintf("invalid responseStatusCode %d", 418))
		eq(t, got, want)
	}
}
