package webhooks

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/test/freeport"
	"github.com/flomesh-io/fsm-webhooks/test/poll"
	"github.com/flomesh-io/fsm-webhooks/test/probehook"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

// env is the one apiserver of this package's tests.
var env *testenv.Env

const denyMessage = probehook.Message

func testLog(t testing.TB, name string) logr.Logger {
	if os.Getenv("WEBHOOKS_TEST_LOG") != "" {
		return funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, name, prefix, args) }, funcr.Options{})
	}
	if t == nil {
		return logr.Discard()
	}
	// Otherwise the last lines are kept and shown if t fails: a timing
	// failure seen once on a loaded CI machine is not explained by anything
	// else the test prints.
	var (
		mu    sync.Mutex
		lines []string
	)
	const keep = 300
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		t.Logf("the last %d lines of %s's log (V(1)):\n%s", len(lines), name, strings.Join(lines, "\n"))
	})
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		if len(lines) == keep {
			lines = append(lines[:0], lines[keep/2:]...)
		}
		lines = append(lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1, LogTimestamp: true})
}

func freePort(t *testing.T) int { return freeport.Must(t) }

// testCase is one isolated fixture: its own fsm namespace, workload
// namespace, configuration name and CA.
type testCase struct {
	t        *testing.T
	logger   logr.Logger
	name     string
	ns       string // fsm namespace (Secrets)
	workNS   string // where test ConfigMaps are admitted
	cs       kubernetes.Interface
	ca       *certstest.CA
	urlMode  bool
	validity time.Duration
}

func newCase(t *testing.T, name string, urlMode bool) *testCase {
	t.Helper()
	ca, err := certstest.New(context.Background(), certstest.Options{RootValidity: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	tc := &testCase{t: t, name: name, ns: name + "-fsm", workNS: name + "-work", cs: env.Clientset, ca: ca, urlMode: urlMode}
	ctx := context.Background()
	for _, ns := range []*corev1.Namespace{
		{ObjectMeta: metav1.ObjectMeta{Name: tc.ns}},
		{ObjectMeta: metav1.ObjectMeta{Name: tc.workNS, Labels: map[string]string{"webhook-test": name}}},
	} {
		if _, err := tc.cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

// log is the servers' logger of this case: one buffer, shown if it fails.
func (tc *testCase) log() logr.Logger {
	if tc.logger.GetSink() == nil {
		tc.logger = testLog(tc.t, tc.name)
	}
	return tc.logger
}

func (tc *testCase) configName() string { return "deny-" + tc.name }

func (tc *testCase) registration() Registration {
	none := admv1.SideEffectClassNone
	return Registration{
		Kind: ValidatingConfiguration,
		Name: tc.configName(),
		Path: fsmnames.ValidatorPath,
		Validating: &admv1.ValidatingWebhookConfiguration{
			ObjectMeta: metav1.ObjectMeta{Name: tc.configName()},
			Webhooks: []admv1.ValidatingWebhook{{
				Name: "deny.test.flomesh.io",
				Rules: []admv1.RuleWithOperations{{
					Operations: []admv1.OperationType{admv1.Create},
					Rule:       admv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				}},
				NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"webhook-test": tc.name}},
				FailurePolicy:           ptr.To(admv1.Fail),
				SideEffects:             &none,
				TimeoutSeconds:          ptr.To[int32](5),
				AdmissionReviewVersions: []string{"v1"},
			}},
		},
	}
}

func (tc *testCase) options() Options {
	o := Options{
		Config:         env.Config,
		Namespace:      tc.ns,
		MeshName:       "fsm",
		BindHost:       "127.0.0.1",
		Issuer:         tc.ca,
		ResyncInterval: time.Second,
		SettleDelay:    time.Second,
		CertValidity:   tc.validity,
		Log:            tc.log(),
	}
	if tc.urlMode {
		o.WebhookURLHost = "127.0.0.1"
	}
	return o
}

func (tc *testCase) webhook(port int) Webhook {
	return Webhook{
		Name:         "deny-" + tc.name,
		Port:         port,
		ServiceName:  fsmnames.ValidatorService,
		SecretName:   fsmnames.ValidatorCertSecret,
		Handlers:     map[string]http.Handler{fsmnames.ValidatorPath: reviewhttp.NewAdmission(probehook.Handler()).Named("deny-" + tc.name)},
		Registration: tc.registration(),
	}
}

// running is a started Server.
type running struct {
	*Server
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		if r.err != nil {
			t.Errorf("server returned %v", r.err)
		}
	case <-time.After(30 * time.Second):
		_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 1)
		t.Fatal("server did not stop within 30s")
	}
}

func start(t *testing.T, opts Options, hooks ...Webhook) *running {
	t.Helper()
	s, err := New(opts, hooks)
	if err != nil {
		t.Fatal(err)
	}
	return run(t, s)
}

// run starts a Server built by New (tests may adjust its hooks first).
func run(t *testing.T, s *Server) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		r.err = s.Start(ctx)
	}()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// settleWithin bounds a wait for what a server does on its own after an
// event: an informer delivers it, a pass of the loop acts on it (a write, a
// cert issued and loaded, a probe run), the apiserver's admission chain
// catches up. A liveness bound, not a latency the tests require (those that
// require one say so and derive it from the configured timing): on CI's
// loaded 2-core machine such a pass in this package once came over 8 s late
// (TestServing/Expiry), so a 10 s bound was a coin toss there.
const settleWithin = 30 * time.Second

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	poll.Until(t, timeout, 50*time.Millisecond, what, cond)
}

func (r *running) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 30*time.Second, "server ready", func() error { return r.Ready(context.Background()) })
}

// admitOnce creates a ConfigMap the test webhook must deny: nil means the
// apiserver reached the webhook over TLS and got its answer.
func (tc *testCase) admitOnce(ctx context.Context) error {
	return probehook.Admit(ctx, tc.cs, tc.workNS)
}

// waitAdmitting waits until admissions go through the webhook and keep
// doing so for about a second. The apiserver admits through its own cached
// copy of the webhook configurations, which can lag what the server's
// readiness saw, or a deletion and recreation of the configuration. The
// second is timed, not counted in admissions: on a starved machine one can
// take a second, and twenty in a row then outlasted the wait.
func (tc *testCase) waitAdmitting(t *testing.T) {
	t.Helper()
	ok, since := 0, time.Time{}
	waitFor(t, settleWithin, "admitting through the webhook for a second", func() error {
		if err := tc.admitOnce(context.Background()); err != nil {
			ok = 0
			return err
		}
		if ok++; ok == 1 {
			since = time.Now()
		}
		if ok < 3 || time.Since(since) < time.Second {
			return errTest("admitted " + strconv.Itoa(ok) + " time(s) in a row")
		}
		return nil
	})
}

// startLoop admits through the webhook every 50 ms until Finish, which fails
// the test on any failure.
func (tc *testCase) startLoop() *testenv.Loop {
	return testenv.StartLoop(50*time.Millisecond, tc.admitOnce)
}

func (tc *testCase) config(t *testing.T) *admv1.ValidatingWebhookConfiguration {
	t.Helper()
	c, err := tc.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(context.Background(), tc.configName(), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (tc *testCase) secret(t *testing.T) *corev1.Secret {
	t.Helper()
	s, err := tc.cs.CoreV1().Secrets(tc.ns).Get(context.Background(), fsmnames.ValidatorCertSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func runtimeRaw(b []byte) runtime.RawExtension { return runtime.RawExtension{Raw: b} }

func ptrTrue() *bool { return ptr.To(true) }

func isAlreadyExists(err error) bool { return apierrors.IsAlreadyExists(err) }
