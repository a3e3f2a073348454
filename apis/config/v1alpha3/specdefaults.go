package v1alpha3

import "github.com/flomesh-io/fsm-webhooks/apis/config/lossless"

// SpecDefaults are the defaults of the v1alpha3 CRD schema's spec (the
// +kubebuilder:default markers of meshconfig_types.go, as controller-gen
// writes them into the chart's CRD; spoke's TestHubSpecDefaults keeps the
// two equal). Conversion gives them where the apiserver would give them to a
// v1alpha3 write of the same data. Callers must not modify it.
var SpecDefaults = obj(map[string]*lossless.Defaults{
	"clusterSet": obj(map[string]*lossless.Defaults{
		"isManaged": def(false),
		"region":    def(DefaultClusterSetValue),
		"zone":      def(DefaultClusterSetValue),
		"group":     def(DefaultClusterSetValue),
	}),
	"sidecar": obj(map[string]*lossless.Defaults{
		"compressConfig":                  def(true),
		"holdApplicationUntilProxyStarts": def(true),
		"gracefulExitUntilDownstreamEnds": def(true),
		"localDNSProxy":                   obj(map[string]*lossless.Defaults{"generateIPv6BasedOnIPv4": def(false)}),
		"xnetDNSProxy": obj(map[string]*lossless.Defaults{
			"upstreams": {Items: obj(map[string]*lossless.Defaults{"port": def(int64(53))})},
		}),
	}),
	"traffic": obj(map[string]*lossless.Defaults{
		"serviceAccessMode": def("mixed"),
		"serviceAccessNames": {
			Default: map[string]any{"mustWithServicePort": false, "withTrustDomain": true},
			Properties: map[string]*lossless.Defaults{
				"mustWithServicePort": def(false),
				"withTrustDomain":     def(true),
				"mustWithNamespace":   def(true),
				"cloud": {
					Default:    map[string]any{"withNamespace": true},
					Properties: map[string]*lossless.Defaults{"withNamespace": def(true)},
				},
			},
		},
	}),
	"warmup": obj(map[string]*lossless.Defaults{
		"enable":     def(true),
		"duration":   def("90s"),
		"minWeight":  def(int64(10)),
		"maxWeight":  def(int64(100)),
		"aggression": def(int64(1)),
	}),
	"ingress": obj(map[string]*lossless.Defaults{
		"enabled":    def(true),
		"namespaced": def(false),
		"type":       def("LoadBalancer"),
		"logLevel":   def("info"),
		"http": {
			Default: map[string]any{"enabled": true, "bind": int64(80), "listen": int64(8000), "nodePort": int64(30508)},
			Properties: map[string]*lossless.Defaults{
				"enabled": def(true), "bind": def(int64(80)), "listen": def(int64(8000)), "nodePort": def(int64(30508)),
			},
		},
		"tls": {
			Default: map[string]any{"enabled": true, "bind": int64(443), "listen": int64(8443), "nodePort": int64(30607), "mTLS": false},
			Properties: map[string]*lossless.Defaults{
				// false: the field's default, unlike the object's (FSM's).
				"enabled": def(false), "bind": def(int64(443)), "listen": def(int64(8443)), "nodePort": def(int64(30607)), "mTLS": def(false),
				"sslPassthrough": {
					Default:    map[string]any{"enabled": false, "upstreamPort": int64(443)},
					Properties: map[string]*lossless.Defaults{"enabled": def(false), "upstreamPort": def(int64(443))},
				},
			},
		},
	}),
	"gatewayAPI": obj(map[string]*lossless.Defaults{"enabled": def(false), "logLevel": def("info")}),
	"serviceLB":  obj(map[string]*lossless.Defaults{"enabled": def(false), "image": def("flomesh/mirrored-klipper-lb:v0.4.7")}),
	"flb": obj(map[string]*lossless.Defaults{
		"enabled": def(false), "strictMode": def(false), "upstreamMode": def("Endpoint"), "secretName": def("fsm-flb-secret"),
	}),
	"egressGateway": obj(map[string]*lossless.Defaults{
		"enabled": def(false), "logLevel": def("info"), "mode": def("http2tunnel"),
		"port": def(int64(1080)), "adminPort": def(int64(6060)), "replicas": def(int64(1)),
	}),
	"image": obj(map[string]*lossless.Defaults{
		"registry": def(DefaultImageRegistry), "tag": def(DefaultImageTag), "pullPolicy": def(string(DefaultImagePullPolicy)),
	}),
	"misc": obj(map[string]*lossless.Defaults{"repoServerImage": def(DefaultRepoServerImage)}),
	"connector": obj(map[string]*lossless.Defaults{
		"DO_NOT_EDIT_viaGateway": def(DefaultConnectorNotice),
		"lb":                     obj(map[string]*lossless.Defaults{"type": def(string(ActiveActiveLbType))}),
	}),
})

func obj(props map[string]*lossless.Defaults) *lossless.Defaults {
	return &lossless.Defaults{Properties: props}
}

func def(v any) *lossless.Defaults { return &lossless.Defaults{Default: v} }
