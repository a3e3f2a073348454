package charttest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"helm.sh/helm/v3/pkg/action"
	chart "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/release"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
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
	r, err := asHelm4(rel)
	if err != nil {
		return nil, err
	}
	return decodeRendered(r)
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
			out, err = fromHelm3(rel)
			return err
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
		out, err = fromHelm3(rel)
		return err
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

func fromHelm3(rel *release.Release) (*Release, error) {
	r, err := asHelm4(rel)
	if err != nil {
		return nil, err
	}
	return fromHelm4(r), nil
}

// asHelm4 is a Helm 3 release as the Helm 4 SDK's type, so that one path
// reads both SDKs' releases: Helm 4 reads the release records Helm 3
// stores, which are this JSON. The chart and Info.Resources (interfaces
// JSON cannot decode into) are left out; nothing here reads them.
func asHelm4(rel *release.Release) (*releasev1.Release, error) {
	if rel == nil {
		return nil, nil
	}
	r := *rel
	r.Chart = nil
	if r.Info != nil {
		info := *r.Info
		info.Resources = nil
		r.Info = &info
	}
	js, err := json.Marshal(&r)
	if err != nil {
		return nil, fmt.Errorf("encoding Helm 3 release %s: %w", rel.Name, err)
	}
	out := new(releasev1.Release)
	if err := json.Unmarshal(js, out); err != nil {
		return nil, fmt.Errorf("decoding Helm 3 release %s as Helm 4's: %w", rel.Name, err)
	}
	return out, nil
}
