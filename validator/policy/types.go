// Package policy validates FSM's mesh policy resources (SMI TrafficTarget,
// policy.flomesh.io and plugin.flomesh.io kinds) with FSM's messages, which
// users search for. The types here carry only the fields the rules read and
// are decoded leniently: unknown fields are ignored, so a newer CRD with more
// fields still validates. Rules that need other objects take them as
// arguments; reading them is the caller's job.
package policy

import (
	"encoding/json"
	"fmt"
)

// Groups, versions and kinds handled here.
const (
	AccessGroupVersion = "access.smi-spec.io/v1alpha3"
	SpecsGroupVersion  = "specs.smi-spec.io/v1alpha4"
	PolicyGroupVersion = "policy.flomesh.io/v1alpha1"
	PluginGroupVersion = "plugin.flomesh.io/v1alpha1"

	KindTrafficTarget          = "TrafficTarget"
	KindIngressBackend         = "IngressBackend"
	KindAccessControl          = "AccessControl"
	KindEgress                 = "Egress"
	KindUpstreamTrafficSetting = "UpstreamTrafficSetting"
	KindEgressGateway          = "EgressGateway"
	KindAccessCert             = "AccessCert"
	KindPlugin                 = "Plugin"
	KindPluginChain            = "PluginChain"
	KindPluginConfig           = "PluginConfig"
	KindHTTPRouteGroup         = "HTTPRouteGroup"

	SourceKindService                = "Service"
	SourceKindAuthenticatedPrincipal = "AuthenticatedPrincipal"
	SourceKindIPRange                = "IPRange"
)

// Meta is the part of metadata the rules read.
type Meta struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// Fill sets the name and namespace the object lacks from the admission
// request's (an object sent without metadata, as FSM's own tables do, still
// names its namespace in the request).
func (m *Meta) Fill(name, namespace string) {
	if m.Name == "" {
		m.Name = name
	}
	if m.Namespace == "" {
		m.Namespace = namespace
	}
}

// TrafficTarget (access.smi-spec.io/v1alpha3).
type TrafficTarget struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Destination struct {
			Namespace string `json:"namespace"`
		} `json:"destination"`
	} `json:"spec"`
}

// Backend of an IngressBackend or AccessControl.
type Backend struct {
	Name string `json:"name"`
	Port struct {
		Number   int64  `json:"number"`
		Protocol string `json:"protocol"`
	} `json:"port"`
	TLS *struct {
		SkipClientCertValidation bool `json:"skipClientCertValidation"`
	} `json:"tls"`
}

// Source of an IngressBackend or AccessControl.
type Source struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

// BackendPolicy is an IngressBackend or an AccessControl: both have backends
// and sources with the same rules.
type BackendPolicy struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Backends []Backend `json:"backends"`
		Sources  []Source  `json:"sources"`
	} `json:"spec"`
}

// Egress (policy.flomesh.io/v1alpha1).
type Egress struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Matches []struct {
			APIGroup *string `json:"apiGroup"`
			Kind     string  `json:"kind"`
			Name     string  `json:"name"`
		} `json:"matches"`
	} `json:"spec"`
}

// LocalHTTPRateLimit is the part of an HTTP local rate limit the rules read.
type LocalHTTPRateLimit struct {
	ResponseStatusCode int64 `json:"responseStatusCode"`
}

// UpstreamTrafficSetting (policy.flomesh.io/v1alpha1).
type UpstreamTrafficSetting struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Host      string `json:"host"`
		RateLimit *struct {
			Local *struct {
				HTTP *LocalHTTPRateLimit `json:"http"`
			} `json:"local"`
		} `json:"rateLimit"`
		HTTPRoutes []struct {
			Path      string `json:"path"`
			RateLimit *struct {
				Local *LocalHTTPRateLimit `json:"local"`
			} `json:"rateLimit"`
		} `json:"httpRoutes"`
	} `json:"spec"`
}

// EgressGateway (policy.flomesh.io/v1alpha1).
type EgressGateway struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		Global []json.RawMessage `json:"global"`
	} `json:"spec"`
}

// Plugin (plugin.flomesh.io/v1alpha1, cluster-scoped).
type Plugin struct {
	Metadata Meta `json:"metadata"`
	Spec     struct {
		// PipyScript is FSM's field name (required by its CRD).
		PipyScript string `json:"pipyscript"`
	} `json:"spec"`
}

// Decode reads a raw object into one of the types above. Unknown fields are
// ignored; a value of the wrong JSON type is an error naming it.
func Decode(raw []byte, into any) error {
	if len(raw) == 0 {
		return fmt.Errorf("no object in the request")
	}
	if err := json.Unmarshal(raw, into); err != nil {
		return fmt.Errorf("decoding the object: %w", err)
	}
	return nil
}
