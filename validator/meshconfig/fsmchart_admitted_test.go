package meshconfig

import "testing"

// TestFSMChartVariantsAdmitted: the MeshConfig FSM v1.5.1's install writes
// for non-default chart values (each set as preset-mesh-config.yaml renders
// it after bootstrap's Go round trip), values FSM's chart schema and CRD
// allow and FSM runs with, is admitted. FSM has no MeshConfig webhook, so a
// denial here would be one of our rules refusing a mesh FSM runs. The
// values FSM itself reads with a fallback or that do nothing (certKeyBitSize
// outside 2048-4096, unparsable durations, an inclusion inside an
// exclusion, warmup minWeight > maxWeight) stay denied, as validator/README
// documents; an IPv6 DNS upstream is denied because FSM's DNS proxy cannot
// dial it.
func TestFSMChartVariantsAdmitted(t *testing.T) {
	digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	cases := []struct {
		values string
		sets   []kv
	}{
		{"fsm.tracing.enable=true (port 9411, address \"\", endpoint, sampledFraction unset)", []kv{
			{"spec.observability.tracing", map[string]any{"enable": true, "port": 9411, "endpoint": "/api/v2/spans"}}}},
		{"fsm.tracing.sampledFraction=0.1, address=jaeger.tracing", []kv{
			{"spec.observability.tracing", map[string]any{"enable": true, "port": 9411, "address": "jaeger.tracing", "endpoint": "/api/v2/spans", "sampledFraction": "0.1"}}}},
		{"fsm.remoteLogging.enable=true (defaults)", []kv{
			{"spec.observability.remoteLogging", map[string]any{"enable": true, "level": 2, "port": 30514, "sampledFraction": "1.0", "secretName": "fsm-remote-logging-secret"}}}},
		{"fsm.controllerLogLevel=trace, sidecarLogLevel=warning", []kv{
			{"spec.observability.fsmLogLevel", "trace"}, {"spec.sidecar.logLevel", "warning"}}},
		{"fsm.fsmIngress.enabled=true, service.type=NodePort, tls on, passthrough on", []kv{
			{"spec.ingress", map[string]any{"enabled": true, "namespaced": false, "logLevel": "debug", "type": "NodePort",
				"http": map[string]any{"enabled": true, "bind": 80, "listen": 8000, "nodePort": 30508},
				"tls": map[string]any{"enabled": true, "bind": 443, "listen": 8443, "nodePort": 30607, "mTLS": true,
					"sslPassthrough": map[string]any{"enabled": true, "upstreamPort": 443}}}}}},
		{"fsm.fsmGateway.enabled=true, logLevel=warn", []kv{{"spec.gatewayAPI", map[string]any{"enabled": true, "logLevel": "warn"}}}},
		{"fsm.egressGateway.enabled=true, mode=sock5, replicaCount=0", []kv{
			{"spec.egressGateway", map[string]any{"enabled": true, "logLevel": "error", "mode": "sock5", "port": 1080, "adminPort": 6060, "replicas": 0}}}},
		{"fsm.flb.enabled=true, upstreamMode=NodePort, strictMode=true", []kv{
			{"spec.flb", map[string]any{"enabled": true, "strictMode": true, "upstreamMode": "NodePort", "secretName": "fsm-flb-secret"}}}},
		{"fsm.serviceLB.enabled=true, image.registry=registry.local:5000/mirror", []kv{
			{"spec.serviceLB", map[string]any{"enabled": true, "image": "registry.local:5000/mirror/mirrored-klipper-lb:v0.4.7"}}}},
		{"fsm.image.registry=123456789012.dkr.ecr.us-east-1.amazonaws.com/flomesh, tag=v1.5.1-rc.1, pullPolicy=\"\"", []kv{
			{"spec.image.registry", "123456789012.dkr.ecr.us-east-1.amazonaws.com/flomesh"}, {"spec.image.tag", "v1.5.1-rc.1"}, {"spec.image.pullPolicy", ""}}},
		{"fsm.image.tag=\"\" with digests for some components", []kv{
			{"spec.image.tag", ""}, {"spec.image.digest", map[string]any{"fsmController": digest, "fsmInjector": digest, "fsmCurl": ""}}}},
		{"fsm.sidecar.image.tag=1.5.12@sha256:..., fsm.repoServer.image.registry=localhost:5000", []kv{
			{"spec.sidecar.sidecarImage", "flomesh/pipy:1.5.12@" + digest}, {"spec.misc.repoServerImage", "localhost:5000/pipy-repo:1.5.12"}}},
		{"fsm.localDNSProxy wildcard on with ipv6 + db + IP upstreams", []kv{
			{"spec.sidecar.localDNSProxy", map[string]any{"enable": true, "primaryUpstreamDNSServerIPAddr": "10.96.0.10", "secondaryUpstreamDNSServerIPAddr": "10.96.0.11",
				"generateIPv6BasedOnIPv4": true,
				"wildcard":                map[string]any{"enable": true, "los": []any{map[string]any{"ipv4": "127.0.0.3", "ipv6": "::1"}}, "ips": []any{map[string]any{"ipv4": "127.0.0.2", "ipv6": "::ffff:127.0.0.2"}}},
				"db":                      []any{map[string]any{"dn": "svc.example.com", "ips": []any{map[string]any{"ipv4": "10.0.0.5"}}}}}}}},
		// FSM's DNS proxy dials "<value>:53": a host name resolves
		// (pkg/dns/config.go GetNameservers, miekg/dns over net.Dialer).
		{"fsm.localDNSProxy upstreams as host names", []kv{
			{"spec.sidecar.localDNSProxy.enable", true},
			{"spec.sidecar.localDNSProxy.primaryUpstreamDNSServerIPAddr", "kube-dns.kube-system.svc.cluster.local"},
			{"spec.sidecar.localDNSProxy.secondaryUpstreamDNSServerIPAddr", "coredns.kube-system"}}},
		{"fsm.xnetDNSProxy.enable=true, upstreams with ip/port and name only", []kv{
			{"spec.sidecar.xnetDNSProxy", map[string]any{"enable": true, "upstreams": []any{
				map[string]any{"name": "kube-dns", "namespace": "kube-system", "ip": "10.96.0.10", "port": 53},
				map[string]any{"name": "fsm-controller", "port": 0}}}}}},
		{"traffic lists: carve-out exclusion inside inclusion, ports, interfaces", []kv{
			{"spec.traffic.outboundIPRangeInclusionList", []any{"10.96.0.0/12", "0.0.0.0/0"}},
			{"spec.traffic.outboundIPRangeExclusionList", []any{"10.96.0.10/32", "169.254.169.254/32", "192.168.1.1/16"}},
			{"spec.traffic.outboundPortExclusionList", []any{1, 53, 65535}}, {"spec.traffic.inboundPortExclusionList", []any{15000}},
			{"spec.traffic.networkInterfaceExclusionList", []any{"cni0", "flannel.1", "veth+", "vxlan-v6.calico", "eth0.100"}}}},
		{"fsm.trafficInterceptionMode=NodeLevel, localProxyMode=PodIP, serviceAccessMode=domain", []kv{
			{"spec.traffic.interceptionMode", "NodeLevel"}, {"spec.sidecar.localProxyMode", "PodIP"}, {"spec.traffic.serviceAccessMode", "domain"}}},
		{"fsm.warmup.enable=true, duration=5m, minWeight=0, maxWeight=100", []kv{
			{"spec.warmup", map[string]any{"enable": true, "duration": "5m0s", "minWeight": 0, "maxWeight": 100}}}},
		{"fsm.repoServer.standalone=true, ipaddr=fsm-repo.fsm-system (and FQDN, IP, localhost), port=32767", []kv{
			{"spec.repoServer", map[string]any{"ipaddr": "fsm-repo.fsm-system", "port": 32767, "codebase": "mesh/"}}}},
		{"fsm.repoServer.ipaddr=Fsm-Repo.FSM-System.svc.cluster.local", []kv{{"spec.repoServer.ipaddr", "Fsm-Repo.FSM-System.svc.cluster.local"}}},
		// An absolute name: valid in the http://<ipaddr>:<port>/repo/ URL
		// FSM's driver (pipy_container.go) and our injector write.
		{"fsm.repoServer.ipaddr=fsm-repo.fsm-system.svc.cluster.local.", []kv{{"spec.repoServer.ipaddr", "fsm-repo.fsm-system.svc.cluster.local."}}},
		{"fsm.certificateProvider.certKeyBitSize=3072, serviceCertValidityDuration=8760h", []kv{
			{"spec.certificate.certKeyBitSize", 3072}, {"spec.certificate.serviceCertValidityDuration", "8760h"}}},
		{"fsm.configResyncInterval=0 / 90s, maxDataPlaneConnections=100, sidecarTimeout=0", []kv{
			{"spec.sidecar.configResyncInterval", "0"}, {"spec.sidecar.maxDataPlaneConnections", 100}, {"spec.sidecar.sidecarTimeout", 0}}},
		{"clusterSet.isManaged=true, names", []kv{{"spec.clusterSet", map[string]any{"isManaged": true, "uid": "x", "region": "r", "zone": "z", "group": "g", "name": "c1", "controlPlaneUID": "u", "properties": []any{}}}}},
		{"connector.viaGateway as fsm-connector-gateway writes it", []kv{
			{"spec.connector.viaGateway", map[string]any{"clusterIP": "10.96.1.1", "externalIP": "", "ingressAddr": "10.96.1.1", "ingressHTTPPort": 10080, "ingressGRPCPort": 10180, "egressAddr": "10.96.1.1", "egressHTTPPort": 10090, "egressGRPCPort": 0}}}},
	}
	for _, c := range cases {
		fsmChartAdmits(t, c.values, c.sets...)
	}
}
