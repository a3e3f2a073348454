package install_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authzv1 "k8s.io/api/authorization/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// startAPIServer starts an apiserver whose client knows the chart's kinds
// (scheme) and returns a context that bounds the test to timeout from then,
// cancelled when the test ends.
func startAPIServer(t *testing.T, timeout time.Duration) (context.Context, *testenv.Env) {
	t.Helper()
	return startAPIServerWith(t, timeout, nil)
}

// startAPIServerWith is startAPIServer with extra kube-apiserver flags.
func startAPIServerWith(t *testing.T, timeout time.Duration, flags map[string]string) (context.Context, *testenv.Env) {
	t.Helper()
	env := testenv.Start(t, testenv.Options{Client: client.Options{Scheme: scheme(t)}, APIServerFlags: flags})
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	return ctx, env
}

// awaitRBAC waits until the apiserver grants the servers' ServiceAccount
// every rule its bindings name. The RBAC authorizer reads roles and bindings
// from informers, which a loaded apiserver brings up to date late: a server
// started, or an access review made, the moment `helm install` returns can
// be refused what the chart grants (serve exits on a refused read of its CA
// Secret). In a cluster the pod starts seconds later, and restarts if not.
// Waiting for what the chart grants hides no rule it lacks.
func awaitRBAC(ctx context.Context, t *testing.T, env *testenv.Env) {
	t.Helper()
	deadline := time.Now().Add(time.Minute) // liveness only
	for {
		err := rbacGranted(ctx, env)
		if err == nil {
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("the chart's RBAC not in force for %s within a minute: %v", saUser, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rbacGranted says which rule bound to the servers' ServiceAccount the
// apiserver does not grant it yet (an access review per rule).
func rbacGranted(ctx context.Context, env *testenv.Env) error {
	var crbs rbacv1.ClusterRoleBindingList
	var rbs rbacv1.RoleBindingList
	if err := env.Client.List(ctx, &crbs); err != nil {
		return err
	}
	if err := env.Client.List(ctx, &rbs); err != nil {
		return err
	}
	ours := func(subjects []rbacv1.Subject) bool {
		for _, s := range subjects {
			if s.Kind == rbacv1.ServiceAccountKind && "system:serviceaccount:"+s.Namespace+":"+s.Name == saUser {
				return true
			}
		}
		return false
	}
	type binding struct {
		namespace string
		ref       rbacv1.RoleRef
	}
	var bound []binding
	for _, b := range crbs.Items {
		if ours(b.Subjects) {
			bound = append(bound, binding{"", b.RoleRef})
		}
	}
	for _, b := range rbs.Items {
		if ours(b.Subjects) {
			bound = append(bound, binding{b.Namespace, b.RoleRef})
		}
	}
	if len(bound) == 0 {
		return fmt.Errorf("no binding names %s", saUser)
	}
	for _, b := range bound {
		var rules []rbacv1.PolicyRule
		if b.ref.Kind == "ClusterRole" {
			var r rbacv1.ClusterRole
			if err := env.Client.Get(ctx, client.ObjectKey{Name: b.ref.Name}, &r); err != nil {
				return err
			}
			rules = r.Rules
		} else {
			var r rbacv1.Role
			if err := env.Client.Get(ctx, client.ObjectKey{Namespace: b.namespace, Name: b.ref.Name}, &r); err != nil {
				return err
			}
			rules = r.Rules
		}
		for _, r := range rules {
			if len(r.Verbs) == 0 || len(r.APIGroups) == 0 || len(r.Resources) == 0 {
				continue
			}
			a := authzv1.ResourceAttributes{Namespace: b.namespace, Verb: r.Verbs[0], Group: r.APIGroups[0]}
			a.Resource, a.Subresource, _ = strings.Cut(r.Resources[0], "/")
			if len(r.ResourceNames) > 0 {
				a.Name = r.ResourceNames[0]
			}
			sar := &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{User: saUser, Groups: saGroups, ResourceAttributes: &a}}
			got, err := env.Clientset.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			if !got.Status.Allowed {
				return fmt.Errorf("%+v not granted (%s)", a, got.Status.Reason)
			}
		}
	}
	return nil
}

// watchConfig is cfg for a watch the test holds open as long as it runs.
// testenv's clients have a 60 s timeout (rest.Config.Timeout), which
// net/http applies to reading a response's body too: a watch made through
// env.Config or env.Clientset ends silently a minute after it began, and
// whatever it was counting misses every later event (a takeover under
// load on a starved 2-core machine outlasts a minute).
func watchConfig(cfg *rest.Config) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Timeout = 0
	return c
}

// buildServer builds the fsm-webhooks binary of this checkout into dir: the
// hook and server tests run the real binary against the apiserver.
func buildServer(ctx context.Context, t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "fsm-webhooks")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/fsm-webhooks")
	build.Dir = filepath.Join(charttest.Dir(), "..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building fsm-webhooks: %v\n%s", err, out)
	}
	return bin
}

// helmFlags are `helm -n fsm-system --kubeconfig <kubeconfig>`'s flags, for
// the Helm 4 and Helm 3 SDKs alike.
func helmFlags(t *testing.T, kubeconfig []byte) *genericclioptions.ConfigFlags {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &path
	namespace := ns
	flags.Namespace = &namespace
	cacheDir := filepath.Join(dir, "cache")
	flags.CacheDir = &cacheDir
	return flags
}

// converterConversion is the MeshConfig CRD's conversion stanza as the
// converter writes it: webhook on fsm-bootstrap, a caBundle.
func converterConversion(t *testing.T) *apiextv1.CustomResourceConversion {
	t.Helper()
	return &apiextv1.CustomResourceConversion{
		Strategy: apiextv1.WebhookConverter,
		Webhook: &apiextv1.WebhookConversion{
			ClientConfig: &apiextv1.WebhookClientConfig{
				Service:  &apiextv1.ServiceReference{Namespace: ns, Name: "fsm-bootstrap", Path: ptr.To("/convert"), Port: ptr.To[int32](9443)},
				CABundle: selfSignedPEM(t),
			},
			ConversionReviewVersions: []string{"v1"},
		},
	}
}

// renderYAML renders the chart in ns with the values document doc; it
// returns the values too.
func renderYAML(t *testing.T, doc string) (map[string]any, *charttest.Rendered) {
	t.Helper()
	values, err := charttest.Values(doc)
	if err != nil {
		t.Fatal(err)
	}
	r, err := charttest.Render(ns, values)
	if err != nil {
		t.Fatal(err)
	}
	return values, r
}

// newHelm is a Helm client that installs the chart in ns on env's apiserver.
func newHelm(t *testing.T, env *testenv.Env) *charttest.Cluster {
	t.Helper()
	helm, err := charttest.NewCluster(env.KubeConfig, t.TempDir(), ns)
	if err != nil {
		t.Fatal(err)
	}
	return helm
}

// policyWrite is one write made as the servers' ServiceAccount and what the
// chart's admission policies must make of it.
type policyWrite struct {
	name  string
	write func() error
	want  string // refusal text; "" when allowed
}

// checkWrites runs each write as a subtest: an allowed one must succeed, a
// refused one must fail Forbidden with its refusal text.
func checkWrites(t *testing.T, writes []policyWrite) {
	t.Helper()
	for _, tc := range writes {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.write()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (!apierrors.IsForbidden(err) || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v, want Forbidden by the policy (%q)", err, tc.want)
			}
		})
	}
}
