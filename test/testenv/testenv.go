// Package testenv starts a real kube-apiserver and etcd (controller-runtime
// envtest) for tests. The binaries come from internal/kubeassets (built once
// from the Go module proxy into a per-user cache, or KUBEBUILDER_ASSETS when
// set). A test that needs the apiserver and cannot get it fails; it never skips.
package testenv

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/flomesh-io/fsm-webhooks/internal/kubeassets"
)

// Env is a running apiserver with clients for it.
type Env struct {
	*envtest.Environment
	Config    *rest.Config
	Client    client.Client
	Clientset kubernetes.Interface
}

// Options tune the environment.
type Options struct {
	// CRDDirectoryPaths are installed before Start returns. Use MeshConfigCRDs()
	// for the repo's generated CRDs.
	CRDDirectoryPaths []string
	// Client options (set Scheme to decode the repo's and other APIs).
	Client client.Options
	// APIServerFlags are extra kube-apiserver flags (name without dashes).
	APIServerFlags map[string]string
}

// RepoRoot returns the repository root, found from this source file.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// MeshConfigCRDs is the directory of the generated CRD YAML.
func MeshConfigCRDs() string {
	return filepath.Join(RepoRoot(), "charts", "fsm-webhooks", "crds")
}

// TuneEtcd configures a test etcd not to fsync. Its data lives in a temp
// directory on disk that nothing needs after the test, yet each write
// waited on a sync, and on a CI machine busy with builds a sync can take
// seconds (etcd warns of it as "slow fdatasync"): longer than some tests'
// windows, such as a 20 s certificate renewed 8 s before it expires. It is
// still etcd, serving kube-apiserver as in a cluster.
func TuneEtcd(e *envtest.Etcd) {
	e.Configure().Set("unsafe-no-fsync", "true")
}

// TuneAPIServer has a test kube-apiserver end the watches still open when
// it stops: otherwise it waits up to a minute for them to finish (its HTTP
// server's shutdown timeout), and a test whose informers outlive its
// apiserver, such as one on context.Background(), took a minute longer.
func TuneAPIServer(api *envtest.APIServer) {
	api.Configure().Set("shutdown-watch-termination-grace-period", "2s")
}

// Start launches etcd and kube-apiserver and stops them when the test ends.
func Start(t testing.TB, opts Options) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	dir, err := kubeassets.Kube(ctx, os.Stderr)
	if err != nil {
		t.Fatalf("testenv: kube-apiserver/etcd not available (run `go run ./internal/kubeassets/build`): %v", err)
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: dir,
		CRDDirectoryPaths:     opts.CRDDirectoryPaths,
		ErrorIfCRDPathMissing: len(opts.CRDDirectoryPaths) > 0,
		// envtest's 20 s default is too short on a busy 2-core CI machine
		// running several suites at once.
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	env.ControlPlane.Etcd = &envtest.Etcd{}
	TuneEtcd(env.ControlPlane.Etcd)
	TuneAPIServer(env.ControlPlane.GetAPIServer())
	for k, v := range opts.APIServerFlags {
		env.ControlPlane.GetAPIServer().Configure().Set(k, v)
	}
	cfg, err := env.Start()
	if err != nil {
		t.Fatalf("testenv: starting kube-apiserver and etcd from %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("testenv: stopping: %v", err)
		}
	})
	// Admission through our webhooks can be slow under -race on 2 cores.
	cfg.Timeout = 60 * time.Second
	cl, err := client.New(cfg, opts.Client)
	if err != nil {
		t.Fatalf("testenv: client: %v", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("testenv: clientset: %v", err)
	}
	return &Env{Environment: env, Config: cfg, Client: cl, Clientset: cs}
}
