// Package kubeassets provides the real third-party binaries that the tests and
// the `local` demonstration run against: kube-apiserver and etcd (envtest), the
// node and control-plane components of test/node, and a Vault server. Nothing is
// mocked and nothing is downloaded as a prebuilt binary: each binary is built
// once from its published Go module (through the ordinary Go module proxy) into
// a per-user cache and reused by every later run.
//
// It is not test code: the fsm-webhooks binary links it for `local`, which is
// why it lives here and not under test/.
//
// Builds are serialised across processes with a file lock, because `go test
// ./...` runs several test binaries at once and all of them may ask for the
// same asset on a cold cache: exactly one builds, the others wait and reuse.
//
// The package uses process groups and flock(2) and therefore supports Unix
// only.
package kubeassets

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
)

const (
	// EtcdVersion is the etcd release built for envtest.
	EtcdVersion = "v3.6.16"
	// VaultVersion is the Vault release built for tests. Together with
	// vaultSDK it is the newest pairing that builds from the module proxy:
	// later releases need sdk code that is only in Vault's repository.
	VaultVersion = "v1.21.1"
	vaultSDK     = "v0.20.0"

	// fallbackKubeVersion is used when the build info of the running binary
	// does not name k8s.io/api (e.g. a binary built without module support).
	fallbackKubeVersion = "v1.37.2"

	// Environment variables that point at prebuilt binaries instead of the
	// cache.
	envKubebuilderAssets = "KUBEBUILDER_ASSETS"
	envVaultBinary       = "VAULT_BINARY"
	envNodeAssets        = "FSM_NODE_ASSETS"

	// CrictlVersion is the cri-tools release whose crictl the node harness
	// uses to list and remove pod sandboxes (Debian 12 does not package it).
	CrictlVersion = "v1.37.0"
)

// NodeBinaries are the files in the directory Node returns.
var NodeBinaries = []string{"kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "crictl"}

// kubeStaging lists the staging modules of k8s.io/kubernetes. The kubernetes
// module requires them at v0.0.0 and replaces them with its staging
// directory, which a dependent module cannot see, so every one of them must be
// replaced by its published v0.X.Y tag.
var kubeStaging = []string{
	"api", "apiextensions-apiserver", "apimachinery", "apiserver", "cli-runtime",
	"client-go", "cloud-provider", "cluster-bootstrap", "code-generator",
	"component-base", "component-helpers", "controller-manager", "cri-api",
	"cri-client", "csi-translation-lib", "dynamic-resource-allocation",
	"endpointslice", "externaljwt", "kms", "kube-aggregator",
	"kube-controller-manager", "kube-proxy", "kube-scheduler", "kubectl",
	"kubelet", "metrics", "mount-utils", "pod-security-admission",
	"sample-apiserver", "sample-cli-plugin", "sample-controller", "streaming",
	// Not a staging directory of k8s.io/kubernetes but required by it at
	// v0.0.0 all the same (the kubelet's CRI streaming server): without the
	// replace, `go mod tidy` asks the proxy for v0.0.0 and fails with 403.
	"cri-streaming",
}

// KubeVersion is the Kubernetes release whose kube-apiserver the tests use:
// the one matching the k8s.io/api module this binary was built with (k8s.io/api
// v0.X.Y ships with Kubernetes v1.X.Y), so the apiserver always serves the API
// the code under test was compiled against.
func KubeVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return fallbackKubeVersion
	}
	for _, dep := range info.Deps {
		if dep.Path != "k8s.io/api" {
			continue
		}
		if dep.Replace != nil {
			dep = dep.Replace
		}
		if v, ok := kubeVersionFromAPI(dep.Version); ok {
			return v
		}
		return fallbackKubeVersion
	}
	return fallbackKubeVersion
}

// kubeVersionFromAPI maps a k8s.io/api module version to the Kubernetes
// release tag it was published with. Pseudo-versions have no release and are
// rejected.
func kubeVersionFromAPI(v string) (string, bool) {
	if !semver.IsValid(v) || semver.Major(v) != "v0" || module.IsPseudoVersion(v) {
		return "", false
	}
	if semver.Build(v) != "" {
		return "", false
	}
	return "v1." + strings.TrimPrefix(v, "v0."), true
}

// Kube returns a directory holding kube-apiserver and etcd binaries for
// envtest (envtest.Environment.BinaryAssetsDirectory).
//
// If KUBEBUILDER_ASSETS is set, that directory is used as is after checking
// that both binaries are present. Otherwise the binaries come from the per-user
// cache (see CacheDir) and are built there first if missing or broken; a cold
// build of kube-apiserver takes several minutes, and progress lines are written
// to progress (which may be nil).
func Kube(ctx context.Context, progress io.Writer) (string, error) {
	kv := KubeVersion()
	return assetDir(ctx, progress, envKubebuilderAssets, "kube-"+kv+"-etcd-"+EtcdVersion, []binary{kubeAPIServer(kv), etcd()})
}

// Node returns a directory holding the binaries of a node and the rest of a
// control plane (NodeBinaries): kube-controller-manager, kube-scheduler,
// kubelet and kube-proxy of KubeVersion, built from the same k8s.io/kubernetes
// module as kube-apiserver, and crictl.
//
// If FSM_NODE_ASSETS is set, that directory is used as is after checking that
// every binary is present. Otherwise they come from the per-user cache and are
// built there first if missing or broken (about 6 minutes after
// kube-apiserver, whose module and build caches they share).
func Node(ctx context.Context, progress io.Writer) (string, error) {
	kv := KubeVersion()
	return assetDir(ctx, progress, envNodeAssets, "node-"+kv+"-crictl-"+CrictlVersion, []binary{
		kubeComponent("kube-controller-manager", kv, "about 2 min after kube-apiserver"),
		kubeComponent("kube-scheduler", kv, "about 1 min after kube-apiserver"),
		kubeComponent("kubelet", kv, "about 2 min after kube-apiserver"),
		kubeComponent("kube-proxy", kv, "about 1 min after kube-apiserver"),
		crictl(),
	})
}

// assetDir is the directory holding bins: the one env names, used as is
// once every binary is found executable there, else cacheName under
// CacheDir, where missing or broken binaries are built first.
func assetDir(ctx context.Context, progress io.Writer, env, cacheName string, bins []binary) (string, error) {
	if dir := os.Getenv(env); dir != "" {
		for _, b := range bins {
			if err := checkExecutable(filepath.Join(dir, b.name)); err != nil {
				return "", fmt.Errorf("%s=%s: %w", env, dir, err)
			}
		}
		return dir, nil
	}
	root, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, cacheName)
	if err := ensure(ctx, progressWriter(progress), dir, bins); err != nil {
		return "", err
	}
	return dir, nil
}

// Vault returns the path of a vault binary.
//
// If VAULT_BINARY is set, that file is used after checking it is executable.
// Otherwise the binary comes from the per-user cache and is built there first
// if missing or broken (about 8 minutes cold on 2 cores).
func Vault(ctx context.Context, progress io.Writer) (string, error) {
	if p := os.Getenv(envVaultBinary); p != "" {
		if err := checkExecutable(p); err != nil {
			return "", fmt.Errorf("%s: %w", envVaultBinary, err)
		}
		return p, nil
	}
	root, err := CacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, "vault-"+VaultVersion)
	if err := ensure(ctx, progressWriter(progress), dir, []binary{vault()}); err != nil {
		return "", err
	}
	return filepath.Join(dir, "vault"), nil
}

// CacheDir is the root of the asset cache:
// ${XDG_CACHE_HOME:-$HOME/.cache}/fsm-webhooks/assets on Linux (the user
// cache directory of os.UserCacheDir elsewhere).
func CacheDir() (string, error) {
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("locating the user cache directory for assets: %w", err)
	}
	return filepath.Join(base, "fsm-webhooks", "assets"), nil
}

func kubeAPIServer(version string) binary {
	return kubeComponent("kube-apiserver", version, "5-8 min cold on 2 cores")
}

// kubeComponent builds k8s.io/kubernetes/cmd/<name> at version. Each
// component gets its own throwaway module with the same requirements, so they
// share the module and build caches and differ only in the main package.
func kubeComponent(name, version, estimate string) binary {
	replaces := make([]string, 0, len(kubeStaging))
	apiVersion := "v0." + strings.TrimPrefix(version, "v1.")
	for _, m := range kubeStaging {
		replaces = append(replaces, "k8s.io/"+m+"=k8s.io/"+m+"@"+apiVersion)
	}
	major, minor := "1", strings.SplitN(strings.TrimPrefix(version, "v1."), ".", 2)[0]
	const pkg = "k8s.io/component-base/version"
	return binary{
		name:     name,
		module:   "fsm-webhooks-assets/" + name,
		require:  "k8s.io/kubernetes@" + version,
		replaces: replaces,
		main:     "k8s.io/kubernetes/cmd/" + name,
		// Components report (and the apiserver checks compatibility
		// against) the version stamped here; an unstamped build calls
		// itself v0.0.0.
		ldflags: strings.Join([]string{
			"-s", "-w",
			"-X", pkg + ".gitVersion=" + version,
			"-X", pkg + ".gitMajor=" + major,
			"-X", pkg + ".gitMinor=" + minor,
			"-X", pkg + ".gitTreeState=clean",
		}, " "),
		versionArgs: []string{"--version"},
		versionWant: "Kubernetes " + version,
		estimate:    estimate,
	}
}

func crictl() binary {
	return binary{
		name:    "crictl",
		module:  "fsm-webhooks-assets/crictl",
		require: "sigs.k8s.io/cri-tools@" + CrictlVersion,
		main:    "sigs.k8s.io/cri-tools/cmd/crictl",
		// As cri-tools' Makefile stamps it; unstamped, crictl calls itself
		// "<unknown>".
		ldflags:     "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=" + CrictlVersion,
		versionArgs: []string{"--version"},
		versionWant: "crictl version " + CrictlVersion,
		estimate:    "about 1 min",
	}
}

func etcd() binary {
	return binary{
		name:        "etcd",
		module:      "fsm-webhooks-assets/etcd",
		require:     "go.etcd.io/etcd/server/v3@" + EtcdVersion,
		main:        "go.etcd.io/etcd/server/v3",
		ldflags:     "-s -w",
		versionArgs: []string{"--version"},
		versionWant: "etcd Version: " + strings.TrimPrefix(EtcdVersion, "v"),
		estimate:    "about 1 min cold, less after kube-apiserver",
	}
}

func vault() binary {
	return binary{
		name:    "vault",
		module:  "fsm-webhooks-assets/vault",
		require: "github.com/hashicorp/vault@" + VaultVersion,
		// Vault's own go.mod replaces its sdk with ./sdk, which a dependent
		// module does not see; v0.20.0 is the published sdk matching 1.21.1.
		// The other two replaces are copied from Vault's go.mod.
		replaces: []string{
			"github.com/hashicorp/vault/sdk=github.com/hashicorp/vault/sdk@" + vaultSDK,
			"github.com/99designs/keyring=github.com/Jeffail/keyring@v1.2.3",
			"github.com/ma314smith/signedxml@v1.1.1=github.com/moov-io/signedxml@v1.1.1",
		},
		// Test-only imports of the sdk are unresolvable and unneeded.
		tidyLenient: true,
		main:        "github.com/hashicorp/vault",
		ldflags:     "-s -w",
		versionArgs: []string{"version"},
		versionWant: "Vault " + VaultVersion,
		estimate:    "about 8 min cold on 2 cores",
	}
}

// checkExecutable reports whether path is a regular file with an execute bit.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("missing %s", path)
		}
		return fmt.Errorf("checking %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (mode %s)", path, fi.Mode())
	}
	return nil
}
