// Package charttest renders and installs the fsm-webhooks Helm chart for the
// chart's tests, with the Helm 4 SDK (Render, Cluster) or with either SDK
// through Helm (Helms: Helm 3 and Helm 4). Rendering works without a cluster
// (like `helm template`); install, upgrade and uninstall talk to a real
// apiserver.
package charttest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/chart/common"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/kube"
	release "helm.sh/helm/v4/pkg/release/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"sigs.k8s.io/yaml"
)

// ReleaseName is the release name the tests install under.
const ReleaseName = "fsm-webhooks"

// KubeVersion is the Kubernetes version Render and Lint assume (the envtest
// apiserver's), as `helm template --kube-version` would.
const KubeVersion = "v1.37.2"

// Dir is the chart's directory in this repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", "..", "charts", "fsm-webhooks"))
}

// Load loads the chart from Dir.
func Load() (*chart.Chart, error) {
	ch, err := loader.Load(Dir())
	if err != nil {
		return nil, fmt.Errorf("loading chart %s: %w", Dir(), err)
	}
	return ch, nil
}

// Values parses a YAML values document (what `-f values.yaml` would pass).
func Values(doc string) (map[string]any, error) {
	vals := map[string]any{}
	if err := yaml.Unmarshal([]byte(doc), &vals); err != nil {
		return nil, fmt.Errorf("parsing values: %w", err)
	}
	return vals, nil
}

// Rendered is a rendered release: the manifest's objects and the hooks'.
type Rendered struct {
	Objects []*unstructured.Unstructured
	Hooks   []*unstructured.Unstructured
	// Manifest is the raw manifest text (hooks excluded).
	Manifest string
	// Notes is the rendered NOTES.txt.
	Notes string
}

// Find returns the object of that kind and name among Objects, then Hooks.
func (r *Rendered) Find(kind, name string) *unstructured.Unstructured {
	for _, list := range [][]*unstructured.Unstructured{r.Objects, r.Hooks} {
		for _, o := range list {
			if o.GetKind() == kind && o.GetName() == name {
				return o
			}
		}
	}
	return nil
}

// All returns Objects and Hooks together.
func (r *Rendered) All() []*unstructured.Unstructured {
	return append(append([]*unstructured.Unstructured{}, r.Objects...), r.Hooks...)
}

// Render renders the chart into namespace like `helm template`, schema
// validation included.
func Render(namespace string, values map[string]any) (*Rendered, error) {
	return RenderFor(KubeVersion, namespace, values)
}

// RenderFor is Render for a cluster of kubeVersion (`helm template
// --kube-version`).
func RenderFor(kubeVersion, namespace string, values map[string]any) (*Rendered, error) {
	return RenderWithAPIs(kubeVersion, namespace, values)
}

// RenderWithAPIs is RenderFor for a cluster that also serves apiVersions
// (`helm template --api-versions`, e.g. security.openshift.io/v1).
func RenderWithAPIs(kubeVersion, namespace string, values map[string]any, apiVersions ...string) (*Rendered, error) {
	ch, err := Load()
	if err != nil {
		return nil, err
	}
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	install := action.NewInstall(cfg)
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = ReleaseName
	install.Namespace = namespace
	install.Replace = true
	install.ServerSideApply = false
	kv, err := common.ParseKubeVersion(kubeVersion)
	if err != nil {
		return nil, fmt.Errorf("kube version %q: %w", kubeVersion, err)
	}
	install.KubeVersion = kv
	install.APIVersions = apiVersions
	rel, err := install.Run(ch, values)
	if err != nil {
		return nil, err
	}
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("unexpected release type %T", rel)
	}
	return decodeRendered(r)
}

// decodeRendered decodes a rendered release: its manifest, NOTES.txt and
// hooks (Helm 3's through asHelm4).
func decodeRendered(r *release.Release) (*Rendered, error) {
	var err error
	out := &Rendered{Manifest: r.Manifest}
	if r.Info != nil {
		out.Notes = r.Info.Notes
	}
	if out.Objects, err = decodeAll(r.Manifest); err != nil {
		return nil, fmt.Errorf("decoding manifest: %w", err)
	}
	for _, h := range r.Hooks {
		objs, err := decodeAll(h.Manifest)
		if err != nil {
			return nil, fmt.Errorf("decoding hook %s: %w", h.Path, err)
		}
		out.Hooks = append(out.Hooks, objs...)
	}
	return out, nil
}

func decodeAll(manifest string) ([]*unstructured.Unstructured, error) {
	rd := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(manifest)))
	var out []*unstructured.Unstructured
	for {
		doc, err := rd.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		js, err := yaml.YAMLToJSON(doc)
		if err != nil {
			return nil, err
		}
		if string(bytes.TrimSpace(js)) == "null" {
			continue // a document of comments only
		}
		// Unstructured decoding keeps integers as int64, as the API does.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(js); err != nil {
			return nil, fmt.Errorf("%w in:\n%s", err, doc)
		}
		out = append(out, u)
	}
}

// Cluster drives Helm 4 actions against one apiserver. Where the apiserver has
// no Node (envtest), Install, Upgrade and Rollback run the chart's crd-upgrade
// hook Job in the kubelet's place (hookKubelet).
type Cluster struct {
	cfg       *action.Configuration
	namespace string
	kubelet   *hookKubelet
}

// NewCluster returns Helm actions for the apiserver in kubeconfig (bytes of a
// kubeconfig file), storing releases in namespace as Helm's Secrets driver does.
func NewCluster(kubeconfig []byte, dir, namespace string) (*Cluster, error) {
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		return nil, fmt.Errorf("writing kubeconfig: %w", err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &path
	flags.Namespace = &namespace
	cacheDir := filepath.Join(dir, "cache")
	flags.CacheDir = &cacheDir
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(flags, namespace, "secret"); err != nil {
		return nil, fmt.Errorf("helm configuration: %w", err)
	}
	kubelet, err := newHookKubelet(kubeconfig)
	if err != nil {
		return nil, err
	}
	return &Cluster{cfg: cfg, namespace: namespace, kubelet: kubelet}, nil
}

// Install installs the chart (CRDs from crds/ first, then pre-install hooks,
// then the manifest) and creates the namespace.
func (c *Cluster) Install(ctx context.Context, values map[string]any) (*release.Release, error) {
	ch, err := Load()
	if err != nil {
		return nil, err
	}
	var out *release.Release
	err = c.kubelet.during(ctx, func() error {
		return retryInstall(ctx, func(attempt int) error {
			in := action.NewInstall(c.cfg)
			in.ReleaseName = ReleaseName
			in.Namespace = c.namespace
			in.CreateNamespace = true
			in.WaitStrategy = kube.HookOnlyStrategy
			in.Timeout = 2 * time.Minute
			in.Replace = attempt > 1
			rel, err := in.RunWithContext(ctx, ch, values)
			if err != nil {
				return err
			}
			out, err = asRelease(rel)
			return err
		})
	})
	return out, err
}

// Upgrade upgrades the release to values.
func (c *Cluster) Upgrade(ctx context.Context, values map[string]any) (*release.Release, error) {
	ch, err := Load()
	if err != nil {
		return nil, err
	}
	up := action.NewUpgrade(c.cfg)
	up.Namespace = c.namespace
	up.WaitStrategy = kube.HookOnlyStrategy
	up.Timeout = 2 * time.Minute
	var out *release.Release
	err = c.kubelet.during(ctx, func() error {
		rel, err := up.RunWithContext(ctx, ReleaseName, ch, values)
		if err != nil {
			return fmt.Errorf("helm upgrade: %w", err)
		}
		out, err = asRelease(rel)
		return err
	})
	return out, err
}

// Rollback rolls the release back to revision (0: the previous one).
func (c *Cluster) Rollback(revision int) error {
	rb := action.NewRollback(c.cfg)
	rb.Version = revision
	rb.WaitStrategy = kube.HookOnlyStrategy
	rb.Timeout = 2 * time.Minute
	return c.kubelet.during(context.Background(), func() error {
		if err := rb.Run(ReleaseName); err != nil {
			return fmt.Errorf("helm rollback to revision %d: %w", revision, err)
		}
		return nil
	})
}

// Uninstall removes the release. withHooks=false skips the pre-delete hook
// (its Job needs a kubelet to run).
func (c *Cluster) Uninstall(withHooks bool) error {
	un := action.NewUninstall(c.cfg)
	un.DisableHooks = !withHooks
	un.WaitStrategy = kube.HookOnlyStrategy
	un.Timeout = 2 * time.Minute
	if _, err := un.Run(ReleaseName); err != nil {
		return fmt.Errorf("helm uninstall: %w", err)
	}
	return nil
}

func asRelease(rel any) (*release.Release, error) {
	r, ok := rel.(*release.Release)
	if !ok {
		return nil, fmt.Errorf("unexpected release type %T", rel)
	}
	return r, nil
}
