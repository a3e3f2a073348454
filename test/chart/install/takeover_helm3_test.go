package install_test

import (
	"context"
	"testing"
	"time"

	action3 "helm.sh/helm/v3/pkg/action"
	chartv3 "helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// takeoverHelm is the Helm client a takeover and a rollback run with, as
// docs/migrate-from-fsm.md prescribes for it.
type takeoverHelm struct {
	name string
	// install: `helm install`, with --take-ownership when adopting (Helm 4
	// adds --force-conflicts: its server-side apply of crds/ conflicts with
	// FSM's bootstrap on the CRD).
	install func(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error
	// upgrade: `helm upgrade`, the same flags when adopting; none otherwise.
	upgrade func(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error
	// uninstall: `helm uninstall` without hooks (the test runs the
	// pre-delete Job's command in the kubelet's place).
	uninstall func(t *testing.T, kubeconfig []byte) error
	// ownershipConflict is in the error of an install without
	// --take-ownership next to FSM's release.
	ownershipConflict string
}

var helm4 = takeoverHelm{
	name:              "helm4",
	install:           helmInstall,
	upgrade:           helmUpgrade,
	ownershipConflict: "conflict",
	uninstall: func(t *testing.T, kubeconfig []byte) error {
		un := action.NewUninstall(helmConfig(t, kubeconfig))
		un.DisableHooks = true
		un.WaitStrategy = kube.HookOnlyStrategy
		_, err := un.Run(charttest.ReleaseName)
		return err
	},
}

// helm3 is the Helm 3 SDK (v3.22): --take-ownership, no --force-conflicts
// (client-side apply; it skips a crds/ CRD that exists, FSM's here).
var helm3 = takeoverHelm{
	name:              "helm3",
	ownershipConflict: "invalid ownership metadata",
	install: func(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error {
		t.Helper()
		in := action3.NewInstall(helm3Config(t, kubeconfig))
		in.ReleaseName = charttest.ReleaseName
		in.Namespace = ns
		in.Timeout = 2 * time.Minute
		in.TakeOwnership = takeOwnership
		_, err := in.RunWithContext(ctx, loadHelm3(t), values)
		return err
	},
	upgrade: func(ctx context.Context, t *testing.T, kubeconfig []byte, values map[string]any, takeOwnership bool) error {
		t.Helper()
		up := action3.NewUpgrade(helm3Config(t, kubeconfig))
		up.Namespace = ns
		up.Timeout = 2 * time.Minute
		up.TakeOwnership = takeOwnership
		_, err := up.RunWithContext(ctx, charttest.ReleaseName, loadHelm3(t), values)
		return err
	},
	uninstall: func(t *testing.T, kubeconfig []byte) error {
		un := action3.NewUninstall(helm3Config(t, kubeconfig))
		un.DisableHooks = true
		_, err := un.Run(charttest.ReleaseName)
		return err
	},
}

func loadHelm3(t *testing.T) *chartv3.Chart {
	t.Helper()
	ch, err := loader.Load(charttest.Dir())
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// helm3Config is `helm -n fsm-system` of Helm 3.
func helm3Config(t *testing.T, kubeconfig []byte) *action3.Configuration {
	t.Helper()
	cfg := new(action3.Configuration)
	if err := cfg.Init(helmFlags(t, kubeconfig), ns, "secret", func(string, ...any) {}); err != nil {
		t.Fatal(err)
	}
	return cfg
}
