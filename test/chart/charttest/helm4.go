package charttest

import (
	"context"

	release "helm.sh/helm/v4/pkg/release/v1"
)

// Helm4 is the Helm 4 SDK (helm.sh/helm/v4): Render and Cluster behind Helm.
type Helm4 struct{}

var _ Helm = Helm4{}

// Name implements Helm.
func (Helm4) Name() string { return "helm4" }

// Template implements Helm.
func (Helm4) Template(namespace string, values map[string]any) (*Rendered, error) {
	return Render(namespace, values)
}

// Connect implements Helm.
func (Helm4) Connect(kubeconfig []byte, dir, namespace string) (Releaser, error) {
	c, err := NewCluster(kubeconfig, dir, namespace)
	if err != nil {
		return nil, err
	}
	return helm4Releaser{c}, nil
}

type helm4Releaser struct{ c *Cluster }

func (r helm4Releaser) Install(ctx context.Context, values map[string]any) (*Release, error) {
	rel, err := r.c.Install(ctx, values)
	return fromHelm4(rel), err
}

func (r helm4Releaser) Upgrade(ctx context.Context, values map[string]any) (*Release, error) {
	rel, err := r.c.Upgrade(ctx, values)
	return fromHelm4(rel), err
}

func (r helm4Releaser) Rollback(_ context.Context, revision int) error {
	return r.c.Rollback(revision)
}

func (r helm4Releaser) Uninstall(_ context.Context, withHooks bool) error {
	return r.c.Uninstall(withHooks)
}

func fromHelm4(rel *release.Release) *Release {
	if rel == nil {
		return nil
	}
	out := &Release{Version: rel.Version, Manifest: rel.Manifest}
	if rel.Info != nil {
		out.Status = rel.Info.Status.String()
	}
	for _, h := range rel.Hooks {
		hook := Hook{Kind: h.Kind, Name: h.Name, Phase: h.LastRun.Phase.String()}
		for _, e := range h.Events {
			hook.Events = append(hook.Events, e.String())
		}
		out.Hooks = append(out.Hooks, hook)
	}
	return out
}
