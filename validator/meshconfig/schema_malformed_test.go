package meshconfig

import (
	"testing"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
)

// TestMalformedAnnotationsDoNotPanic: odd conversion annotations on an
// old version's write go through Validate and ValidateUpdate without a
// panic.
func TestMalformedAnnotationsDoNotPanic(t *testing.T) {
	fields := []string{`null`, `[]`, `"x"`, `5`, `{"traffic":null}`, `{"spec":5}`, `{"sidecar":{"resources":{"limits":{"cpu":null}}}}`,
		`{"clusterSet":{"properties":[null]}}`, `{"sidecar":{"xnetDNSProxy":{"upstreams":[null,{}]}}}`, `{"warmup":{"duration":"-1h"}}`,
		`{"sidecar":{"localDNSProxy":{"db":[{"ips":[{}]}]}}}`, `{"ingress":{"tls":{"sslPassthrough":null}}}`}
	exacts := []string{`null`, `[]`, `[null]`, `[{}]`, `[{"path":["spec"]}]`, `[{"path":["spec","traffic"],"was":null,"got":null}]`,
		`[{"path":["spec","x","y"],"was":[null]}]`, `[{"path":["spec","clusterSet","properties"],"was":[null,1]}]`,
		`[{"path":["spec","clusterSet","properties"],"was":[null,1],"got":null}]`,
		`[{"path":["spec","sidecar","maxDataPlaneConnections"],"was":1e400,"got":0}]`,
		`[{"path":["spec","sidecar","maxDataPlaneConnections"],"was":9223372036854775808,"got":0}]`,
		`[{"path":["spec","traffic","inboundPortExclusionList"],"was":[1.5],"got":[]}]`}
	for _, version := range []string{V1alpha1, V1alpha2} {
		for _, f := range append(fields, "") {
			for _, e := range append(exacts, "") {
				ann := map[string]string{}
				if f != "" {
					ann[lossless.AnnotationV1Alpha3Fields] = f
				}
				if e != "" {
					ann[lossless.AnnotationV1Alpha3JSON] = e
				}
				obj := objectJSON(t, version, nil, ann)
				func() {
					defer func() {
						if p := recover(); p != nil {
							t.Errorf("%s fields %s json %s: panic %v", version, f, e, p)
						}
					}()
					Validate(version, obj)
					ValidateUpdate(version, obj, obj)
				}()
			}
		}
	}
}
