// Package config holds the config.flomesh.io API versions (MeshConfig).
// v1alpha3 is the storage version and conversion hub.
package config

//go:generate ../../hack/generate.sh
