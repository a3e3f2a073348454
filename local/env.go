// Package local runs the embedded demonstration environment of `fsm-webhooks
// local`: a real kube-apiserver and etcd on loopback (the binaries built once
// into the per-user cache by internal/kubeassets), the repo's CRDs, and a
// kubeconfig a user can point kubectl at.
package local

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
)

// How long etcd and kube-apiserver each have to start (answer their health
// check) and to stop. envtest's 20 s defaults are what a quiet machine
// needs; on a busy 2-core one (a laptop building, CI running suites beside
// it) kube-apiserver alone can take longer, and envtest then kills it and
// starts it again, each time with the same 20 s, so the demo never starts;
// a stop that outlasts it makes Ctrl-C end in an error. test/testenv waits
// as long.
const (
	startTimeout = 2 * time.Minute
	stopTimeout  = time.Minute
)

// Env is a running local control plane.
type Env struct {
	env *envtest.Environment
	// Config is an admin client config for the apiserver.
	Config *rest.Config
	// KubeconfigPath is a kubeconfig file for the same admin user.
	KubeconfigPath string
	dir            string
}

// Start builds (once, with progress on out) and starts kube-apiserver and etcd,
// installs crds and writes a kubeconfig into a fresh temporary directory.
func Start(ctx context.Context, out io.Writer, crds []*apiextensionsv1.CustomResourceDefinition) (*Env, error) {
	bin, err := kubeassets.Kube(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("getting kube-apiserver and etcd: %w", err)
	}
	dir, err := os.MkdirTemp("", "fsm-webhooks-local-")
	if err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	e := &Env{dir: dir, env: &envtest.Environment{
		BinaryAssetsDirectory: bin,
		CRDs:                  crds,
	}}
	// KUBEBUILDER_CONTROLPLANE_START_TIMEOUT/_STOP_TIMEOUT, when set, are
	// envtest's to read.
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		e.env.ControlPlaneStartTimeout = startTimeout
	}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_STOP_TIMEOUT") == "" {
		e.env.ControlPlaneStopTimeout = stopTimeout
	}
	// On Ctrl-C the apiserver ends the watches still open (a user's
	// `kubectl get -w`) instead of waiting a minute for them.
	e.env.ControlPlane.GetAPIServer().Configure().Set("shutdown-watch-termination-grace-period", "2s")
	fmt.Fprintf(out, "starting etcd and kube-apiserver (%s)\n", bin)
	cfg, err := e.env.Start()
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	e.Config = cfg
	user, err := e.env.AddUser(envtest.User{Name: "fsm-webhooks-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("creating the admin user: %w", err)
	}
	kc, err := user.KubeConfig()
	if err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("rendering the kubeconfig: %w", err)
	}
	e.KubeconfigPath = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(e.KubeconfigPath, kc, 0o600); err != nil {
		_ = e.Stop()
		return nil, fmt.Errorf("writing the kubeconfig: %w", err)
	}
	return e, nil
}

// Stop stops the apiserver and etcd and removes every temporary file.
func (e *Env) Stop() error {
	err := e.env.Stop()
	if rmErr := os.RemoveAll(e.dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}
