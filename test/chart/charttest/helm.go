package charttest

import (
	"context"
	"fmt"
)

// Helm is one major version of the Helm SDK driving the chart, so the same
// test runs as a Helm 3 user (FSM's users) and a Helm 4 user would:
//
//	for _, h := range charttest.Helms() {
//		t.Run(h.Name(), func(t *testing.T) { ... h.Template(ns, values) ... })
//	}
type Helm interface {
	// Name names the SDK in subtest names and messages: "helm3" or "helm4".
	Name() string
	// Template renders the chart into namespace like `helm template
	// --kube-version KubeVersion`, values schema validation included.
	Template(namespace string, values map[string]any) (*Rendered, error)
	// Connect returns this SDK's release actions against the apiserver of
	// kubeconfig (bytes of a kubeconfig file), storing releases in namespace
	// with the Secrets driver. dir holds the kubeconfig and Helm's caches.
	Connect(kubeconfig []byte, dir, namespace string) (Releaser, error)
}

// Releaser is `helm install/upgrade/rollback/uninstall` of release
// ReleaseName. On an apiserver without Nodes (envtest) each action runs the
// chart's crd-upgrade hook Job in-process in the kubelet's place (see
// hookKubelet); other hook Jobs stay pending there.
type Releaser interface {
	// Install installs the chart (crds/ first, then pre-install hooks, then
	// the manifest), creating the namespace.
	Install(ctx context.Context, values map[string]any) (*Release, error)
	// Upgrade upgrades the release to values, hooks included.
	Upgrade(ctx context.Context, values map[string]any) (*Release, error)
	// Rollback rolls the release back to revision (0: the previous one).
	Rollback(ctx context.Context, revision int) error
	// Uninstall removes the release; withHooks=false skips the pre-delete
	// hook, whose Job needs a kubelet.
	Uninstall(ctx context.Context, withHooks bool) error
}

// Release is what the tests read of a release, alike for both SDKs.
type Release struct {
	Version  int
	Status   string // "deployed", "failed", ...
	Manifest string
	Hooks    []Hook
}

// Hook is one hook object of a release and how its last run ended.
type Hook struct {
	Kind, Name string
	Events     []string // "pre-upgrade", ...
	Phase      string   // "Succeeded", "Failed", "Running", "Unknown"; "" if never run
}

// FindHook returns the hook of that kind and name, or nil.
func (r *Release) FindHook(kind, name string) *Hook {
	for i := range r.Hooks {
		if r.Hooks[i].Kind == kind && r.Hooks[i].Name == name {
			return &r.Hooks[i]
		}
	}
	return nil
}

// Helms returns every SDK the chart supports, oldest first.
func Helms() []Helm { return []Helm{Helm3{}, Helm4{}} }

// retryInstall runs install up to three times while the apiserver has not
// yet put a kind from crds/ into discovery. Helm waits for the chart's CRDs
// to be Established and resets its REST mapper, but discovery can lag; the
// pre-install MeshConfig hook then fails with "no matches for kind". A helm
// CLI user hitting that race re-runs the install; so do the tests. attempt
// counts from 1; a retry must replace the release the failed attempt recorded.
func retryInstall(ctx context.Context, install func(attempt int) error) error {
	for attempt := 1; ; attempt++ {
		err := install(attempt)
		if err == nil {
			return nil
		}
		if attempt == 3 || !isDiscoveryLag(err) {
			return fmt.Errorf("helm install (attempt %d): %w", attempt, err)
		}
		if err := sleep(ctx, 1); err != nil {
			return fmt.Errorf("helm install: %w", err)
		}
	}
}
