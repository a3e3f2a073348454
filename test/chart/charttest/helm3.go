package charttest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	chart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

// Helm3 is the Helm 3 SDK (helm.sh/helm/v3), which FSM's users run: its
// own chart loader, values schema validation, client-side three-way merge
// upgrades and hook handling.
type Helm3 struct{}

var _ Helm = Helm3{}

// Name implements Helm.
func (Helm3) Name() string { return "helm3" }

func loadHelm3() (*chart.Chart, error) {
	ch, err := loader.Load(Dir())
	if err != nil {
		return nil, fmt.Errorf("loading chart %s with Helm 3: %w", Dir(), err)
	}
	return ch, nil
}

func discardLog(string, ...any) {}

// Template implements Helm.
func (Helm3) Template(namespace string, values map[string]any) (*Rendered, error) {
	ch, err := loadHelm3()
	if err != nil {
		return nil, err
	}
	in := action.NewInstall(&action.Configuration{Log: discardLog})
	in.DryRun = true
	in.ClientOnly = true
	in.ReleaseName = ReleaseName
	in.Namespace = namespace
	in.Replace = true
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", KubeVersion, err)
	}
	in.KubeVersion = kv
	rel, err := in.Run(ch, values)
	if err != nil {
		return nil, err
	}
	out := &Rendered{Manifest: rel.Manifest}
	if rel.Info != nil {
		out.Notes = rel.Info.Notes
	}
	if out.Objects, err = decodeAll(rel.Manifest); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	for _, h := range rel.Hooks {
		objs, err := decodeAll(h.Manifest)
		if err != nil {
			return nil, fmt.Errorf("decoding hook %s: %w", h.Path, err)
		}
		out.Hooks = append(out.Hooks, objs...)
	}
	return out, nil
}

// Connect implements Helm.
func (Helm3) Connect(kubeconfig []byte, dir, namespace string) (Releaser, error) {
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &path
	flags.Namespace = &namespace
	cacheDir := filepath.Join(dir, "cache")
	flags.CacheDir = &cacheDir
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, namespace, "secret", discardLog); err != nil {
		return nil, fmt.Errorf("helm 3 configuration: %w", err)
	}
	kubelet, err := newHookKubelet(kubeconfig)
	if err != nil {
		return nil, err
	}
	return &helm3Releaser{cfg: cfg, namespace: namespace, kubelet: kubelet}, nil
}

type helm3Releaser struct {
	cfg       *action.Configuration
	namespace string
	kubelet   *hookKubelet
}

// helm3Timeout bounds each action, hooks included (`--timeout`).
const helm3Timeout = 2 * time.Minute

func (r *helm3Releaser) Install(ctx context.Context, values map[string]any) (*Release, error) {
	ch, err := loadHelm3()
	if err != nil {
		return nil, err
	}
	var out *Release
	err = r.kubelet.during(ctx, func() error {
		return retryInstall(ctx, func(attempt int) error {
			in := action.NewInstall(r.cfg)
			in.ReleaseName = ReleaseName
			in.Namespace = r.namespace
			in.CreateNamespace = true
			in.Timeout = helm3Timeout
			in.Replace = attempt > 1
			rel, err := in.RunWithContext(ctx, ch, values)
			if err != nil {
				return err
			}
			out = fromHelm3(rel)
			return nil
		})
	})
	return out, err
}

func (r *helm3Releaser) Upgrade(ctx context.Context, values map[string]any) (*Release, error) {
	ch, err := loadHelm3()
	if err != nil {
		return nil, err
	}
	up := action.NewUpgrade(r.cfg)
	up.Namespace = r.namespace
	up.Timeout = helm3Timeout
	var out *Release
	err = r.kubelet.during(ctx, func() error {
		rel, err := up.RunWithContext(ctx, ReleaseName, ch, values)
		if err != nil {
			return fmt.Errorf("helm upgrade: %w", err)
		}
		out = fromHelm3(rel)
		return nil
	})
	return out, err
}

func (r *helm3Releaser) Rollback(ctx context.Context, revision int) error {
	rb := action.NewRollback(r.cfg)
	rb.Version = revision
	rb.Timeout = helm3Timeout
	return r.kubelet.during(ctx, func() error {
		if err := rb.Run(ReleaseName); err != nil {
			return fmt.Errorf("helm rollback to revision %d: %w", revision, err)
		}
		return nil
	})
}

func (r *helm3Releaser) Uninstall(ctx context.Context, withHooks bool) error {
	un := action.NewUninstall(r.cfg)
	un.DisableHooks = !withHooks
	un.Timeout = helm3Timeout
	return r.kubelet.during(ctx, func() error {
		if _, err := un.Run(ReleaseName); err != nil {
			return fmt.Errorf("helm uninstall: %w", err)
		}
		return nil
	})
}

func fromHelm3(rel *release.Release) *Release {
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
