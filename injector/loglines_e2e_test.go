package injector_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/syncbuf"
)

// jsonLines are the JSON log lines written to b so far, decoded.
func jsonLines(t *testing.T, b *syncbuf.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(b.Bytes()))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// TestSecretControllerLogLines: the bootstrap Secret controller's lines as
// an operator's log pipeline gets them (serve's JSON logger), through the
// real apiserver. Deleting a deleted pod's Secret is the path every meshed
// pod takes, as routine as its admission, which logs nothing at the default
// level: at pod churn of hundreds a second, one info line per pod flooded
// the default log. It is logged at V(1); a Secret swept because no pod ever
// appeared (or it went while no replica ran) stays at info. And the
// "secret" key is the "namespace/name" string every other package logs
// under that key: an object in some lines and a string in others makes a
// log store that types fields (Elasticsearch, OpenSearch) reject one kind.
func TestSecretControllerLogLines(t *testing.T) {
	const ns, grace, churned = "loglines", 2 * time.Second, 5
	env := startCoreEnv(t, ns)
	ctx := context.Background()
	secret := func(id string) *corev1.Secret {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
			Namespace: ns, Name: injector.BootstrapSecretName(id),
			Labels: map[string]string{"app.kubernetes.io/name": "flomesh.io", "app.kubernetes.io/instance": meshName, injector.ProxyUUIDLabel: id},
		}}
	}
	var pods []*corev1.Pod
	for i := range churned {
		id := fmt.Sprintf("churn-%d", i)
		if err := env.Client.Create(ctx, secret(id)); err != nil {
			t.Fatal(err)
		}
		p := pod(id, ns)
		p.Labels = map[string]string{injector.ProxyUUIDLabel: id}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatal(err)
		}
		pods = append(pods, p)
	}
	// A Secret whose pod never appeared (refused by a later webhook).
	if err := env.Client.Create(ctx, secret("orphan")); err != nil {
		t.Fatal(err)
	}

	// serve's logger (root.go's newLoggerTo) with V(1) enabled, so that the
	// level of each line can be told.
	var out syncbuf.Buffer
	log := zap.New(zap.Level(zapcore.DebugLevel), zap.UseDevMode(false), zap.WriteTo(&out), zap.StacktraceLevel(zapcore.DPanicLevel))
	mgr := secretControllerManager(t, env, injector.SecretControllerOptions{MeshName: meshName, GracePeriod: grace, Logger: log})
	mctx, cancel := context.WithCancel(ctx)
	startManager(mctx, t, mgr, cancel)
	if !mgr.GetCache().WaitForCacheSync(mctx) {
		t.Fatal("cache did not sync")
	}
	for _, p := range pods {
		// Unscheduled: gone from storage at once, as a stopped pod is.
		if err := env.Client.Delete(ctx, p, client.GracePeriodSeconds(0)); err != nil {
			t.Fatal(err)
		}
	}
	gone := func(id string) bool {
		err := env.Client.Get(ctx, client.ObjectKeyFromObject(secret(id)), &corev1.Secret{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return apierrors.IsNotFound(err)
	}
	deleted := func() (byReason map[string][]map[string]any) {
		byReason = map[string][]map[string]any{}
		for _, l := range jsonLines(t, &out) {
			if l["msg"] == "deleted bootstrap Secret" {
				r, _ := l["reason"].(string)
				byReason[r] = append(byReason[r], l)
			}
		}
		return byReason
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		d := deleted()
		if len(d[injector.ReasonPodDeleted]) == churned && len(d[injector.ReasonNoPod]) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s: deletion lines %v, want %d %s and 1 %s (orphan gone: %v)", d, churned, injector.ReasonPodDeleted, injector.ReasonNoPod, gone("orphan"))
		}
	}

	d := deleted()
	for reason, want := range map[string]string{injector.ReasonPodDeleted: "debug", injector.ReasonNoPod: "info"} {
		for _, l := range d[reason] {
			if l["level"] != want {
				t.Errorf("%s line at level %v, want %s: %v", reason, l["level"], want, l)
			}
		}
	}
	for _, l := range jsonLines(t, &out) {
		v, ok := l["secret"]
		if !ok {
			continue
		}
		if s, isString := v.(string); !isString || !strings.HasPrefix(s, ns+"/") {
			t.Errorf("line %q: \"secret\" is %T %v, want the string %s/<name> every package logs", l["msg"], v, v, ns)
		}
	}
}
