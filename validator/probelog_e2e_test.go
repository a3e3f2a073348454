package validator_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/validator"
)

// TestDryRunDenialsNotLoggedByDefault: through the real apiserver, what the
// validator logs at the default level. Every replica's readiness proof
// (validator.Probe, every 20 s) is a dry-run create of an invalid MeshConfig
// named as the mesh's own, which the validator denies by design: each was a
// "denied" info line naming fsm-system/fsm-mesh-config with five errors, so
// an operator looking for why the mesh's MeshConfig was refused read that
// someone kept writing a bad one. A dry run changes nothing and its sender
// reads the whole answer (the probe, kubectl diff, --dry-run=server): its
// denial is logged at V(1). A denied write stays one info line.
func TestDryRunDenialsNotLoggedByDefault(t *testing.T) {
	env := testenv.Start(t, testenv.Options{
		CRDDirectoryPaths: []string{testenv.MeshConfigCRDs(), filepath.Join("testdata", "crds")},
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c := env.Client

	var (
		mu    sync.Mutex
		lines []string
	)
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, args)
	}, funcr.Options{Verbosity: 0})
	taken := func() []string {
		mu.Lock()
		defer mu.Unlock()
		out := lines
		lines = nil
		return out
	}
	url := serveValidator(ctx, t, validator.Options{Reader: c, MeshName: "fsm", FSMNamespace: fsmNS, MeshConfigName: meshConfig, Logger: log})
	mustCreate(ctx, t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNS}})
	register(ctx, t, c, url)
	taken() // register's own dry runs

	for range 3 {
		if err := validator.Probe(ctx, c, fsmNS, meshConfig); err != nil {
			t.Fatalf("probe: %v", err)
		}
	}
	if got := taken(); len(got) != 0 {
		t.Errorf("3 readiness probes logged %d line(s) at the default level, want none:\n%s", len(got), strings.Join(got, "\n"))
	}

	bad, err := validator.DemoInvalidMeshConfig(fsmNS, meshConfig)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, bad); !validator.IsWebhookDenial(err) {
		t.Fatalf("create of an invalid MeshConfig: %v, want the validator's denial", err)
	}
	if got := taken(); len(got) != 1 || !strings.Contains(got[0], `"msg"="denied"`) || !strings.Contains(got[0], `"name"="`+meshConfig+`"`) {
		t.Errorf("a denied write logged %q, want one \"denied\" line naming the MeshConfig", got)
	}
	// The same object as a dry run: nothing at the default level.
	if err := c.Create(ctx, bad, client.DryRunAll); !validator.IsWebhookDenial(err) {
		t.Fatalf("dry-run create of an invalid MeshConfig: %v, want the validator's denial", err)
	}
	if got := taken(); len(got) != 0 {
		t.Errorf("a denied dry run logged %q at the default level, want nothing", got)
	}
}
