// Package benchenv is what the load and memory tools (test/bench/load,
// test/bench/mem) both set up before they measure serve: an envtest control
// plane with the chart's CRDs, serve's own kubeconfig, the serve binary.
package benchenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
)

// Start starts kube-apiserver and etcd (built by internal/kubeassets, with
// progress on stderr) with the chart's CRDs installed, and returns a config
// whose client-side limits are not what limits the load (QPS and burst 5000,
// a minute per request). The caller stops env.
func Start(ctx context.Context) (env *envtest.Environment, cfg *rest.Config, err error) {
	assets, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		return nil, nil, err
	}
	crds, err := chart.CRDs()
	if err != nil {
		return nil, nil, err
	}
	// The machine may be busy: give the control plane time to come up.
	env = &envtest.Environment{BinaryAssetsDirectory: assets, CRDs: crds, ControlPlaneStartTimeout: 3 * time.Minute}
	if cfg, err = env.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting apiserver: %w", err)
	}
	cfg.QPS, cfg.Burst, cfg.Timeout = 5000, 5000, time.Minute
	return env, cfg, nil
}

// WriteKubeconfig writes an admin kubeconfig for serve into dir: a user of
// its own, so its requests are told apart in the apiserver's logs.
func WriteKubeconfig(env *envtest.Environment, dir string) (string, error) {
	user, err := env.AddUser(envtest.User{Name: "fsm-webhooks", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return "", fmt.Errorf("creating serve's user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

// BuildServe builds cmd/fsm-webhooks from the checkout the tool runs in
// into dir, as the Dockerfile builds the shipped image's binary: without
// cgo (no libc or dynamic loader mapped: 1.5 MiB of RSS), trimmed paths,
// no symbol table or DWARF.
func BuildServe(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "fsm-webhooks")
	// -buildvcs=auto stamps the commit (the load tool prints it) even where
	// GOFLAGS turns stamping off.
	cmd := exec.CommandContext(ctx, "go", "build", "-buildvcs=auto", "-trimpath", "-ldflags=-s -w", "-o", bin, "github.com/flomesh-io/fsm-webhooks/cmd/fsm-webhooks")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building fsm-webhooks: %w", err)
	}
	return bin, nil
}
