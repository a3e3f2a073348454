package meshconfig

import (
	"bytes"
	"encoding/json"
)

// view is a version-neutral reading of a MeshConfig: the fields the rules read,
// with FSM's JSON names, in types wide enough for every served version. Ports
// are int64 so a value FSM's int16 fields cannot hold (32768-65535, or
// anything out of range) is reported with its path instead of failing the
// whole decode. Unknown fields are ignored: the CRD schema owns structure.
type view struct {
	Metadata struct {
		Name        string            `json:"name"`
		Namespace   string            `json:"namespace"`
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec spec `json:"spec"`
}

type spec struct {
	Sidecar       sidecar       `json:"sidecar"`
	RepoServer    repoServer    `json:"repoServer"`
	Traffic       traffic       `json:"traffic"`
	Warmup        warmup        `json:"warmup"`
	Observability observability `json:"observability"`
	Certificate   certificate   `json:"certificate"`
	Ingress       ingress       `json:"ingress"`
	GatewayAPI    logLevelOnly  `json:"gatewayAPI"`
	ServiceLB     serviceLB     `json:"serviceLB"`
	FLB           flb           `json:"flb"`
	EgressGateway egressGateway `json:"egressGateway"`
	Image         image         `json:"image"`
	Misc          misc          `json:"misc"`
	Connector     connector     `json:"connector"`
}

type sidecar struct {
	LogLevel                string          `json:"logLevel"`
	SidecarImage            string          `json:"sidecarImage"`
	SidecarClass            string          `json:"sidecarClass"`
	InitContainerImage      string          `json:"initContainerImage"`
	SidecarDrivers          []sidecarDriver `json:"sidecarDrivers"`
	ConfigResyncInterval    string          `json:"configResyncInterval"`
	MaxDataPlaneConnections int64           `json:"maxDataPlaneConnections"`
	TLSMinProtocolVersion   string          `json:"tlsMinProtocolVersion"`
	TLSMaxProtocolVersion   string          `json:"tlsMaxProtocolVersion"`
	CipherSuites            []string        `json:"cipherSuites"`
	ECDHCurves              []string        `json:"ecdhCurves"`
	LocalProxyMode          string          `json:"localProxyMode"`
	LocalDNSProxy           localDNSProxy   `json:"localDNSProxy"`
	XNetDNSProxy            xnetDNSProxy    `json:"xnetDNSProxy"`
	Resources               resources       `json:"resources"`
	InitResources           resources       `json:"initResources"`
	HealthcheckResources    resources       `json:"healthcheckResources"`
}

type sidecarDriver struct {
	SidecarName        string `json:"sidecarName"`
	SidecarImage       string `json:"sidecarImage"`
	InitContainerImage string `json:"initContainerImage"`
	ProxyServerPort    int64  `json:"proxyServerPort"`
}

type localDNSProxy struct {
	Enable    bool   `json:"enable"`
	Primary   string `json:"primaryUpstreamDNSServerIPAddr"`
	Secondary string `json:"secondaryUpstreamDNSServerIPAddr"`
	Wildcard  struct {
		LOs []resolveAddr `json:"los"`
		IPs []resolveAddr `json:"ips"`
	} `json:"wildcard"`
	DB []struct {
		DN  string        `json:"dn"`
		IPs []resolveAddr `json:"ips"`
	} `json:"db"`
}

type resolveAddr struct {
	IPv4 string `json:"ipv4"`
	IPv6 string `json:"ipv6"`
}

type xnetDNSProxy struct {
	Upstreams []struct {
		Name string `json:"name"`
		IP   string `json:"ip"`
		Port *int64 `json:"port"`
	} `json:"upstreams"`
}

type repoServer struct {
	IPAddr string `json:"ipaddr"`
	Port   int64  `json:"port"`
}

type traffic struct {
	InterceptionMode              string        `json:"interceptionMode"`
	ServiceAccessMode             string        `json:"serviceAccessMode"`
	OutboundIPRangeExclusionList  []string      `json:"outboundIPRangeExclusionList"`
	OutboundIPRangeInclusionList  []string      `json:"outboundIPRangeInclusionList"`
	OutboundPortExclusionList     []int64       `json:"outboundPortExclusionList"`
	InboundPortExclusionList      []int64       `json:"inboundPortExclusionList"`
	NetworkInterfaceExclusionList []string      `json:"networkInterfaceExclusionList"`
	InboundExternalAuthorization  externalAuthz `json:"inboundExternalAuthorization"`
}

type externalAuthz struct {
	Enable  bool   `json:"enable"`
	Port    int64  `json:"port"`
	Timeout string `json:"timeout"`
}

type warmup struct {
	Duration   string   `json:"duration"`
	MinWeight  *int64   `json:"minWeight"`
	MaxWeight  *int64   `json:"maxWeight"`
	Aggression *float64 `json:"aggression"` // a number (1.5) in FSM's schema
}

type observability struct {
	FSMLogLevel   string    `json:"fsmLogLevel"`
	Tracing       collector `json:"tracing"`
	RemoteLogging collector `json:"remoteLogging"`
}

type collector struct {
	Enable          bool     `json:"enable"`
	Port            int64    `json:"port"`
	SampledFraction fraction `json:"sampledFraction"`
	Level           *int64   `json:"level"` // remoteLogging only
}

type certificate struct {
	ServiceCertValidityDuration string `json:"serviceCertValidityDuration"`
	CertKeyBitSize              *int64 `json:"certKeyBitSize"`
	IngressGateway              *struct {
		ValidityDuration string `json:"validityDuration"`
	} `json:"ingressGateway"`
}

type ingress struct {
	Type     string `json:"type"`
	LogLevel string `json:"logLevel"`
	HTTP     *struct {
		Bind     *int64 `json:"bind"`
		Listen   *int64 `json:"listen"`
		NodePort *int64 `json:"nodePort"`
	} `json:"http"`
	TLS *struct {
		Bind           *int64 `json:"bind"`
		Listen         *int64 `json:"listen"`
		NodePort       *int64 `json:"nodePort"`
		SSLPassthrough *struct {
			UpstreamPort *int64 `json:"upstreamPort"`
		} `json:"sslPassthrough"`
	} `json:"tls"`
}

type logLevelOnly struct {
	LogLevel string `json:"logLevel"`
}

type serviceLB struct {
	Image string `json:"image"`
}

type flb struct {
	UpstreamMode string `json:"upstreamMode"`
}

type egressGateway struct {
	LogLevel  string `json:"logLevel"`
	Mode      string `json:"mode"`
	Port      *int64 `json:"port"`
	AdminPort *int64 `json:"adminPort"`
	Replicas  *int64 `json:"replicas"`
}

type image struct {
	Registry   string            `json:"registry"`
	Tag        string            `json:"tag"`
	Name       map[string]string `json:"name"`
	Digest     map[string]string `json:"digest"`
	PullPolicy string            `json:"pullPolicy"`
}

type misc struct {
	RepoServerImage string `json:"repoServerImage"`
}

type connector struct {
	LB struct {
		Type string `json:"type"`
	} `json:"lb"`
	ViaGateway struct {
		IngressHTTPPort int64 `json:"ingressHTTPPort"`
		IngressGRPCPort int64 `json:"ingressGRPCPort"`
		EgressHTTPPort  int64 `json:"egressHTTPPort"`
		EgressGRPCPort  int64 `json:"egressGRPCPort"`
	} `json:"viaGateway"`
}

// fraction holds sampledFraction, a JSON number in v1alpha1 and a string in
// v1alpha2/v1alpha3, as its text. Any other JSON value (true, an object) is
// kept as written, which check.Fraction then refuses at its path with the
// value: failing the decode instead would report it as the whole object's.
type fraction struct {
	Set  bool
	Text string
}

func (f *fraction) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*f = fraction{}
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = fraction{Set: true, Text: s}
	default:
		*f = fraction{Set: true, Text: numberOrJSON(b)}
	}
	return nil
}

// numberOrJSON is the text of a JSON number, or b compacted when it is
// another JSON value (rules that parse the text refuse it).
func numberOrJSON(b []byte) string {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		return n.String()
	}
	var c bytes.Buffer
	if json.Compact(&c, b) != nil {
		return string(b)
	}
	return c.String()
}

// resources is a container's corev1.ResourceRequirements with quantities kept
// as text, so an unparsable one is reported with its path instead of failing
// the whole decode.
type resources struct {
	Limits   map[string]quantity `json:"limits"`
	Requests map[string]quantity `json:"requests"`
	Claims   []struct {
		Name string `json:"name"`
	} `json:"claims"`
}

// quantity holds a resource quantity, a JSON string or number, as its text;
// any other JSON value as written, refused with its path by the quantity
// rule (see fraction).
type quantity string

func (q *quantity) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*q = quantity(s)
		return nil
	}
	*q = quantity(numberOrJSON(b))
	return nil
}
