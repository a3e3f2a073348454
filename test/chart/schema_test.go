package chart_test

import (
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// TestValuesRejected: bad values stop `helm install/template` with a message
// naming the field (and, where the validator reports it, the value).
func TestValuesRejected(t *testing.T) {
	tests := []struct {
		name   string
		values string
		want   []string
	}{
		{"unknown provider", "fsm: {certificateProvider: {kind: acme}}", []string{"/fsm/certificateProvider/kind", "tresor", "vault", "cert-manager"}},
		{"bad duration", "fsm: {certificateProvider: {serviceCertValidityDuration: 1day}}", []string{"/fsm/certificateProvider/serviceCertValidityDuration", "1day"}},
		{"key size too small", "fsm: {certificateProvider: {certKeyBitSize: 1024}}", []string{"/fsm/certificateProvider/certKeyBitSize", "got 1,024, want 2,048"}},
		{"mesh name not a DNS label", "fsm: {meshName: My_Mesh}", []string{"/fsm/meshName", "My_Mesh"}},
		{"failure policy", "fsm: {webhook: {failurePolicy: Warn}}", []string{"/fsm/webhook/failurePolicy", "Fail", "Ignore"}},
		{"webhook timeout above the API maximum", "fsm: {webhook: {timeoutSeconds: 31}}", []string{"/fsm/webhook/timeoutSeconds", "31"}},
		{"zero replicas", "fsm: {webhooks: {replicaCount: 0}}", []string{"/fsm/webhooks/replicaCount", "0"}},
		{"replicas as string", `fsm: {webhooks: {replicaCount: "two"}}`, []string{"/fsm/webhooks/replicaCount", "string"}},
		{"vault protocol", "fsm: {vault: {protocol: ftp}}", []string{"/fsm/vault/protocol", "http", "https"}},
		{"vault port", "fsm: {vault: {port: 70000}}", []string{"/fsm/vault/port", "got 70,000, want 65,535"}},
		// Vault routes pki/issue/<role> only for a name its PKI engine can
		// create: another failed the first pod create as "unsupported path".
		{"vault role with a slash", "fsm: {vault: {role: 'mesh/role'}}", []string{"/fsm/vault/role", "mesh/role"}},
		{"unknown key (typo)", "fsm: {certificateprovider: {kind: vault}}", []string{"/fsm", "certificateprovider"}},
		// FSM's docs' example key, which FSM's chart ignores: refused when it
		// means another validity than the one in force, naming the key that
		// sets it (accepted when equal: TestValuesAccepted).
		{"FSM docs' top-level validity", "fsm: {serviceCertValidityDuration: 12h}", []string{"fsm.serviceCertValidityDuration", `"12h"`, "fsm.certificateProvider.serviceCertValidityDuration", `"24h"`}},
		{"ca bundle secret name", "fsm: {caBundleSecretName: Bad_Name}", []string{"/fsm/caBundleSecretName", "Bad_Name"}},
		{"sidecar log level", "fsm: {sidecar: {sidecarLogLevel: verbose}}", []string{"/fsm/sidecar/sidecarLogLevel", "error"}},
		{"sidecar log level with a topic Pipy does not know", "fsm: {sidecar: {sidecarLogLevel: 'debug:http'}}", []string{"/fsm/sidecar/sidecarLogLevel", "debug:http"}},
		{"port exclusion out of range", "fsm: {outboundPortExclusionList: [0]}", []string{"/fsm/outboundPortExclusionList/0"}},
		{"pull policy", "fsm: {image: {pullPolicy: Sometimes}}", []string{"/fsm/image/pullPolicy", "IfNotPresent"}},
		{"resources quantity", "fsm: {webhooks: {resources: {limits: {memory: lots}}}}", []string{"/fsm/webhooks/resources/limits/memory", "lots"}},
		// Cross-field rules, worded like the binary (FSM's messages).
		{"vault without host", "fsm: {certificateProvider: {kind: vault}, vault: {token: t}}", []string{"fsm.vault.host", "VaultHost not specified in Hashi Vault options"}},
		{"vault without role", "fsm: {certificateProvider: {kind: vault}, vault: {host: v, role: '', token: t}}", []string{"fsm.vault.role", "VaultRole not specified in Hashi Vault options"}},
		{"vault without token", "fsm: {certificateProvider: {kind: vault}, vault: {host: v}}", []string{"fsm.vault.secret.name", "fsm.vault.token"}},
		{"vault secret without key", "fsm: {certificateProvider: {kind: vault}, vault: {host: v, secret: {name: tok}}}", []string{"fsm.vault.secret.key", `"tok"`}},
		// FSM's MeshConfig keys: what the injector and the validator would
		// refuse in the MeshConfig is refused here.
		{"interception mode", "fsm: {trafficInterceptionMode: HostLevel}", []string{"/fsm/trafficInterceptionMode", "PodLevel", "NodeLevel"}},
		{"IPv6 inclusion range", "fsm: {outboundIPRangeInclusionList: ['fd00::/8']}", []string{"/fsm/outboundIPRangeInclusionList/0"}},
		{"interface name with a space", "fsm: {networkInterfaceExclusionList: ['eth 1']}", []string{"/fsm/networkInterfaceExclusionList/0"}},
		{"interface name too long", "fsm: {networkInterfaceExclusionList: [abcdefghijklmnop]}", []string{"/fsm/networkInterfaceExclusionList/0"}},
		{"interface name ..", "fsm: {networkInterfaceExclusionList: ['..']}", []string{"/fsm/networkInterfaceExclusionList/0"}},
		{"DNS upstream neither an IPv4 address nor a host name", "fsm: {localDNSProxy: {primaryUpstreamDNSServerIPAddr: 'dns.example.com:53'}}", []string{"/fsm/localDNSProxy/primaryUpstreamDNSServerIPAddr"}},
		// FSM's DNS proxy dials "<value>:53": no address for a bare IPv6
		// address (one in brackets is, TestFSMMeshConfigKeysPrecedence).
		{"DNS upstream IPv6", "fsm: {localDNSProxy: {secondaryUpstreamDNSServerIPAddr: 'fd00::a'}}", []string{"/fsm/localDNSProxy/secondaryUpstreamDNSServerIPAddr"}},
		{"DNS upstream IPv6 with a port", "fsm: {localDNSProxy: {secondaryUpstreamDNSServerIPAddr: '[fd00::a]:53'}}", []string{"/fsm/localDNSProxy/secondaryUpstreamDNSServerIPAddr"}},
		{"wildcard answer not IPv4", "fsm: {localDNSProxy: {wildcard: {ips: [{ipv4: 'fd00::2'}]}}}", []string{"/fsm/localDNSProxy/wildcard/ips/0/ipv4"}},
		{"sampled fraction above 1", `fsm: {tracing: {enable: true, sampledFraction: "1.5"}}`, []string{"/fsm/tracing/sampledFraction", "1.5"}},
		{"sampled fraction as a number (FSM's schema: a string)", "fsm: {tracing: {enable: true, sampledFraction: 0.5}}", []string{"/fsm/tracing/sampledFraction"}},
		{"tracing port", "fsm: {tracing: {port: 0}}", []string{"/fsm/tracing/port"}},
		{"fsm log level", "fsm: {meshConfig: {fsmLogLevel: loud}}", []string{"/fsm/meshConfig/fsmLogLevel"}},
		// FSM's sections the CRD constrains (ingress, gatewayAPI, flb,
		// egressGateway, serviceLB, misc): refused naming the FSM key.
		{"ingress log level", "fsm: {fsmIngress: {logLevel: verbose}}", []string{"/fsm/fsmIngress/logLevel", "info"}},
		{"ingress log level empty", "fsm: {fsmIngress: {logLevel: ''}}", []string{"/fsm/fsmIngress/logLevel"}},
		{"ingress service type", "fsm: {fsmIngress: {service: {type: ClusterIP}}}", []string{"/fsm/fsmIngress/service/type", "LoadBalancer", "NodePort"}},
		{"ingress http port 0", "fsm: {fsmIngress: {http: {port: 0}}}", []string{"/fsm/fsmIngress/http/port"}},
		{"ingress nodePort 0 (FSM's default 0 the CRD refuses)", "fsm: {fsmIngress: {http: {nodePort: 0}}}", []string{"/fsm/fsmIngress/http/nodePort"}},
		{"ingress tls containerPort above 65535", "fsm: {fsmIngress: {tls: {containerPort: 70000}}}", []string{"/fsm/fsmIngress/tls/containerPort"}},
		{"ingress passthrough port", "fsm: {fsmIngress: {tls: {sslPassthrough: {upstreamPort: 65536}}}}", []string{"/fsm/fsmIngress/tls/sslPassthrough/upstreamPort"}},
		{"ingress port as string", `fsm: {fsmIngress: {http: {port: "80"}}}`, []string{"/fsm/fsmIngress/http/port"}},
		{"ingress enabled as string", `fsm: {fsmIngress: {enabled: "true"}}`, []string{"/fsm/fsmIngress/enabled"}},
		{"gateway log level", "fsm: {fsmGateway: {logLevel: 'off'}}", []string{"/fsm/fsmGateway/logLevel"}},
		{"flb upstream mode", "fsm: {flb: {upstreamMode: ClusterIP}}", []string{"/fsm/flb/upstreamMode", "NodePort", "Endpoint"}},
		{"egress gateway mode", "fsm: {egressGateway: {mode: socks5}}", []string{"/fsm/egressGateway/mode", "http2tunnel", "sock5"}},
		{"egress gateway log level", "fsm: {egressGateway: {logLevel: warning}}", []string{"/fsm/egressGateway/logLevel"}},
		{"egress gateway port 0", "fsm: {egressGateway: {port: 0}}", []string{"/fsm/egressGateway/port"}},
		{"egress gateway admin port", "fsm: {egressGateway: {adminPort: 65536}}", []string{"/fsm/egressGateway/adminPort"}},
		{"egress gateway replicas negative", "fsm: {egressGateway: {replicaCount: -1}}", []string{"/fsm/egressGateway/replicaCount"}},
		{"egress gateway replicas above int32", "fsm: {egressGateway: {replicaCount: 2147483648}}", []string{"/fsm/egressGateway/replicaCount"}},
		{"egress gateway replicas decimal", "fsm: {egressGateway: {replicaCount: 1.5}}", []string{"/fsm/egressGateway/replicaCount"}},
		{"service LB registry", "fsm: {serviceLB: {image: {registry: 'http://reg.example.com'}}}", []string{"/fsm/serviceLB/image/registry"}},
		{"service LB image name", "fsm: {serviceLB: {image: {name: Klipper-LB}}}", []string{"/fsm/serviceLB/image/name"}},
		{"service LB tag a decimal", "fsm: {serviceLB: {image: {tag: 1.10}}}", []string{"/fsm/serviceLB/image/tag"}},
		{"repo server tag with a space", "fsm: {repoServer: {image: {tag: 'v 1'}}}", []string{"/fsm/repoServer/image/tag"}},
		{"cluster set isManaged as string", `clusterSet: {isManaged: "yes"}`, []string{"/clusterSet/isManaged"}},
		// Integer flags: within what the binary and the client take.
		{"namespace burst above the maximum", "fsm: {webhooks: {injectorNamespaceBurst: 1000000}}", []string{"/fsm/webhooks/injectorNamespaceBurst", "100,000"}},
		{"cert-manager without issuer", "fsm: {certificateProvider: {kind: cert-manager}, certmanager: {issuerName: ''}}", []string{"fsm.certmanager", "IssuerName/IssuerKind/IssuerGroup not specified in cert-manager.io options"}},
		// serve refuses a --cert-manager-issuer-name no object can have
		// (exit 2, crash loop): refused at render instead.
		{"cert-manager issuer name not an object name", "fsm: {certificateProvider: {kind: cert-manager}, certmanager: {issuerName: Mesh_Root}}", []string{"fsm.certmanager.issuerName", `"Mesh_Root"`}},
		// The binary takes only these two kinds with cert-manager's own group.
		{"cert-manager issuer kind in lower case", "fsm: {certificateProvider: {kind: cert-manager}, certmanager: {issuerKind: clusterissuer, issuerGroup: cert-manager.io}}", []string{"fsm.certmanager.issuerKind", `"clusterissuer"`, "Issuer, ClusterIssuer"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := charttest.Render(ns, mustValues(t, tc.values))
			if err == nil {
				t.Fatalf("values accepted:\n%s", tc.values)
			}
			t.Log(err)
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}
