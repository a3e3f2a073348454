//go:build e2enode

package node_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/test/images"
	"github.com/flomesh-io/fsm-webhooks/test/meshassets"
	"github.com/flomesh-io/fsm-webhooks/test/meshimages"
	"github.com/flomesh-io/fsm-webhooks/test/node"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

const (
	meshNS = "meshed-app"
	// The labels and annotations below are FSM's names as users write them
	// (../shared/injection-reference.md), spelled out rather than taken
	// from the injector so that a renamed constant cannot hide a change.
	monitoredByLabel = "flomesh.io/monitored-by"
	proxyUUIDLabel   = "fsm-proxy-uuid"
)

// sidecarCounts is what the test codebase (testdata/sidecar/main.js)
// serves on the sidecar's metrics port.
type sidecarCounts struct {
	Codebase        string         `json:"codebase"`
	Inbound         int            `json:"inbound"`
	Outbound        int            `json:"outbound"`
	Health          int            `json:"health"`
	InboundPorts    map[string]int `json:"inboundPorts"`
	OutboundTargets map[string]int `json:"outboundTargets"`
}

// codebasePath is where FSM's controller publishes a proxy's codebase in
// its repo, by the rule of ../shared/injection-reference.md: the CN prefix
// <uuid>.sidecar.<serviceaccount>.<namespace> (no trust domain) under
// fsm-sidecar/.
func codebasePath(p *corev1.Pod) string {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return fmt.Sprintf("fsm-sidecar/%s.sidecar.%s.%s", p.Labels[proxyUUIDLabel], sa, p.Namespace)
}

// TestMeshed runs pods the injector mutated with a real Pipy sidecar, real
// iptables in their network namespaces and real traffic: FSM's control
// plane is stood in for by a pipy-repo behind the fsm-controller Service,
// to which the test publishes a small codebase for each proxy (what FSM's
// controller does).
//
// Pipy and CoreDNS come from the asset cache (`go run ./test/meshassets/build`,
// which `make e2e-node` runs first; Pipy's cold build takes ~13 min on an
// idle 2-core machine).
func TestMeshed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	specs, pulls := meshedPodImages(ctx, t)
	if len(pulls) > 0 {
		t.Logf("published images pulled instead of built (name the pods use: reference pulled): %v", pulls)
	}
	mainJS, err := os.ReadFile("testdata/sidecar/main.js")
	if err != nil {
		t.Fatal(err)
	}
	c := node.Start(t, node.Options{Images: append(specs, fsmWebhooksImage(t)), Pulls: pulls, ClusterDNS: true})
	cs := c.Clientset
	installChartReady(ctx, t, c)
	repoURL := startRepo(ctx, t, c)
	c.CreateNamespace(t, meshNS, map[string]string{monitoredByLabel: "fsm"})

	// What FSM's controller does for every injected pod: publish its
	// codebase at its path as soon as the pod exists.
	pub := &publisher{repo: repoURL, mainJS: mainJS, published: map[string]time.Time{}}
	pubCtx, stopPub := context.WithCancel(ctx)
	var pubDone sync.WaitGroup
	pubDone.Go(func() { pub.run(pubCtx, cs, meshNS) })
	defer func() {
		stopPub()
		pubDone.Wait()
		if err := pub.err(); err != nil {
			t.Errorf("publishing codebases: %v", err)
		}
	}()

	app := startApp(ctx, t, c)

	t.Run("injected Deployment is Ready through its rewritten probes", func(t *testing.T) {
		if len(app.Spec.InitContainers) == 0 || app.Spec.InitContainers[0].Name != "fsm-init" {
			t.Fatalf("pod %s not injected: init containers %v", app.Name, containerNames(app.Spec.InitContainers))
		}
		wantURL := fmt.Sprintf("http://fsm-controller.%s:%d/repo/%s/", chartNS, meshimages.RepoPort, codebasePath(app))
		sidecar := findContainer(app.Spec.Containers, "sidecar")
		if sidecar == nil || !slices.Contains(sidecar.Args, wantURL) {
			t.Fatalf("sidecar args do not name the codebase path FSM's controller publishes at (%s): %v", wantURL, sidecar)
		}
		var probes []string
		for _, ct := range app.Spec.Containers {
			for _, p := range []*corev1.Probe{ct.StartupProbe, ct.ReadinessProbe, ct.LivenessProbe} {
				if p != nil && p.HTTPGet != nil {
					probes = append(probes, fmt.Sprintf("%s:%s%s", ct.Name, p.HTTPGet.Port.String(), p.HTTPGet.Path))
				}
			}
		}
		t.Logf("rewritten probes: %v", probes)
		st := initStatus(app, "fsm-init")
		if st == nil || st.State.Terminated == nil || st.State.Terminated.ExitCode != 0 {
			t.Errorf("fsm-init: %+v, want terminated with exit code 0", st)
		} else {
			tm := st.State.Terminated
			t.Logf("figures: fsm-init ran %s", tm.FinishedAt.Sub(tm.StartedAt.Time))
		}
		got := counts(ctx, t, app.Status.PodIP)
		if got.Codebase != "fsm-webhooks-node-test" {
			t.Errorf("sidecar metrics port answers %+v: not the test codebase", got)
		}
		if got.Health == 0 {
			t.Errorf("no probe went through the sidecar's health ports: %+v", got)
		}
		if at, ok := pub.publishedAt(codebasePath(app)); ok {
			t.Logf("codebase published %s after the pod's creation", at.Sub(app.CreationTimestamp.Time).Round(100*time.Millisecond))
		}
	})

	t.Run("the pod's nat table is what fsm-init was given", func(t *testing.T) {
		want := natRuleCounts(initScript(t, app))
		got := natRuleCounts(podNAT(ctx, t, c, app))
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("rules per chain in the pod's nat table %v, want the injected script's %v", got, want)
		}
		if want["FSM_PROXY_IN_REDIRECT"] == 0 || want["FSM_PROXY_OUT_REDIRECT"] == 0 {
			t.Errorf("injected script lacks the redirect chains: %v", want)
		}
	})

	t.Run("traffic goes through the proxies and exclusions bypass them", func(t *testing.T) {
		svc, err := cs.CoreV1().Services(meshNS).Get(ctx, "app", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		client := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "client", Annotations: map[string]string{
				"flomesh.io/sidecar-injection": "enabled",
				// 9000 goes around the client's proxy; the DNS Service's
				// address too (any port).
				"flomesh.io/outbound-port-exclusion-list":     "9000",
				"flomesh.io/outbound-ip-range-exclusion-list": node.ClusterDNSIP + "/32",
			}},
			Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{
					meshtool("get", "get", "http://app:8080/", "60s"),
					meshtool("dial-excluded-port", "dial", "app:9000", "10s"),
					meshtool("dial-excluded-ip", "dial", node.ClusterDNSIP+":53", "10s"),
				},
			},
		}
		client = createPod(ctx, t, cs, client)
		c.WaitFor(t, "the client's containers to exit 0", 3*time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(meshNS).Get(ctx, client.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			client = p
			done := 0
			for _, st := range p.Status.ContainerStatuses {
				if st.Name == "sidecar" || st.Name == "fsm-healthcheck" {
					continue
				}
				if tm := st.State.Terminated; tm != nil {
					if tm.ExitCode != 0 {
						t.Fatalf("client container %s exited %d: %s", st.Name, tm.ExitCode, containerLog(ctx, cs, p, st.Name))
					}
					done++
				}
			}
			if done != 3 {
				return fmt.Errorf("%d of 3 done: %s", done, podReasons(p))
			}
			return nil
		})
		cc := counts(ctx, t, client.Status.PodIP)
		ac := counts(ctx, t, app.Status.PodIP)
		t.Logf("client sidecar: %+v; app sidecar: %+v", cc, ac)
		if n, mem, cpu := sidecarUsage(ctx, t, c); n > 0 {
			t.Logf("figures: %d running sidecars (CRI stats): working set %.1f MiB, CPU %d millicores on average",
				n, float64(mem)/float64(n)/(1<<20), cpu/uint64(n)/1e6)
		}
		logPodUsage(ctx, t, c, app)
		appTarget := net2(svc.Spec.ClusterIP, 8080)
		if n := cc.OutboundTargets[appTarget]; n < 1 || n > 3 {
			// More than the client's attempts would mean the sidecar's own
			// connection (uid 1500) looped back into 15001.
			t.Errorf("client outbound through 15001 to %s: %d connections, want 1-3 (one per attempt): %+v", appTarget, n, cc)
		}
		for target := range cc.OutboundTargets {
			if strings.HasSuffix(target, ":9000") || strings.HasPrefix(target, node.ClusterDNSIP+":") {
				t.Errorf("excluded outbound %s went through the client's proxy: %+v", target, cc)
			}
		}
		if ac.InboundPorts["8080"] < 1 {
			t.Errorf("app inbound through 15003 to 8080: none: %+v", ac)
		}
		if n := ac.InboundPorts["9000"]; n != 0 {
			t.Errorf("excluded inbound port 9000 went through the app's proxy %d times: %+v", n, ac)
		}
	})

	t.Run("native sidecar: a Job's pod completes", func(t *testing.T) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "native"},
			Spec: batchv1.JobSpec{
				BackoffLimit: ptr.To[int32](0),
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
						"flomesh.io/sidecar-injection": "enabled",
						"flomesh.io/sidecar-native":    "true",
					}},
					Spec: corev1.PodSpec{
						RestartPolicy: corev1.RestartPolicyNever,
						Containers:    []corev1.Container{meshtool("get", "get", "http://app:8080/", "60s")},
					},
				},
			},
		}
		if _, err := cs.BatchV1().Jobs(meshNS).Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var pod *corev1.Pod
		c.WaitFor(t, "job native to complete", 3*time.Minute, func(ctx context.Context) error {
			j, err := cs.BatchV1().Jobs(meshNS).Get(ctx, job.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			pods, err := cs.CoreV1().Pods(meshNS).List(ctx, metav1.ListOptions{LabelSelector: "job-name=native"})
			if err != nil {
				return err
			}
			if len(pods.Items) == 1 {
				pod = &pods.Items[0]
			}
			if j.Status.Succeeded == 1 {
				return nil
			}
			if j.Status.Failed > 0 {
				t.Fatalf("job failed; pods: %s", podsSummary(ctx, cs, meshNS))
			}
			return fmt.Errorf("job %+v; pods: %s", j.Status, podsSummary(ctx, cs, meshNS))
		})
		if pod == nil {
			t.Fatal("no pod of job native")
		}
		c.WaitFor(t, "the job's pod to end Succeeded", time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(meshNS).Get(ctx, pod.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			pod = p
			if p.Status.Phase != corev1.PodSucceeded {
				return fmt.Errorf("phase %s: %s", p.Status.Phase, podReasons(p))
			}
			return nil
		})
		sc := findContainer(pod.Spec.InitContainers, "sidecar")
		if sc == nil || sc.RestartPolicy == nil || *sc.RestartPolicy != corev1.ContainerRestartPolicyAlways {
			t.Fatalf("sidecar is not a native sidecar init container: %v", containerNames(pod.Spec.InitContainers))
		}
		sst, ast := initStatus(pod, "sidecar"), containerStatus(pod, "get")
		if sst == nil || ast == nil || sst.State.Terminated == nil || ast.State.Terminated == nil {
			t.Fatalf("sidecar %+v, app %+v: want both terminated", sst, ast)
		}
		if ast.State.Terminated.StartedAt.Before(&sst.State.Terminated.StartedAt) {
			t.Errorf("app started %s, before the proxy (%s)", ast.State.Terminated.StartedAt, sst.State.Terminated.StartedAt)
		}
		// The Job controller matches a podFailurePolicy onExitCodes rule
		// without containerName against every container's non-zero exit
		// code, native sidecars' too: a proxy stopped with a non-zero code
		// after the app would fail or count a Job on the proxy's code
		// instead of the app's.
		if code := sst.State.Terminated.ExitCode; code != 0 {
			t.Errorf("the native sidecar, stopped after the app, exited %d (%s): podFailurePolicy rules without containerName match it", code, sst.State.Terminated.Reason)
		}
	})

	t.Run("deleting a meshed pod: every container stops on its signal, pod and Secret gone in seconds", func(t *testing.T) {
		secret := "sidecar-bootstrap-config-" + app.Labels[proxyUUIDLabel]
		if _, err := cs.CoreV1().Secrets(meshNS).Get(ctx, secret, metav1.GetOptions{}); err != nil {
			t.Fatalf("bootstrap Secret of the live pod: %v", err)
		}
		// MeshConfig's gracefulExitUntilDownstreamEnds (true by default, as
		// FSM's recorded pods show) gives the sidecar Pipy's gkill preStop:
		// Pipy ignores SIGTERM as PID 1, so this hook is what stops it.
		sc := findContainer(app.Spec.Containers, "sidecar")
		if sc == nil || sc.Lifecycle == nil || sc.Lifecycle.PreStop == nil || sc.Lifecycle.PreStop.Exec == nil ||
			!slices.Equal(sc.Lifecycle.PreStop.Exec.Command, []string{"/usr/local/bin/gkill"}) {
			t.Fatalf("sidecar has no preStop exec /usr/local/bin/gkill: %+v", sc)
		}
		grace := int64(30)
		if app.Spec.TerminationGracePeriodSeconds != nil {
			grace = *app.Spec.TerminationGracePeriodSeconds
		}
		stops := watchStops(ctx, t, cs, app)
		// Pipy's PID on the host, read while it runs.
		pipyPID, pidErr := containerPID(ctx, c, containerStatus(app, "sidecar"))
		t.Logf("the sidecar's Pipy: host PID %d (%v), %d threads", pipyPID, pidErr, strings.Count(procThreads(pipyPID), "\n"))
		// Scale to 0 so that no replacement takes the name's place.
		if _, err := cs.AppsV1().Deployments(meshNS).Patch(ctx, "app", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		// What the pod's sockets, the sidecar's log and Pipy's threads look
		// like 3, 10 and 20 s into its termination: a sidecar still up then
		// is held by a connection (Pipy's graceful stop waits for them all)
		// or stuck in its own exit (pipyexit_test.go), named here if it gets
		// killed.
		var sockets []string
		var ssOut []string  // the ss output of each snapshot that got one
		var exitHang string // Pipy stuck in its exit, as a snapshot saw it
		var snap sync.WaitGroup
		snap.Go(func() {
			for _, at := range []time.Duration{3 * time.Second, 10 * time.Second, 20 * time.Second} {
				time.Sleep(time.Until(start.Add(at)))
				out, err := inPodNetns(ctx, c, app, "ss", "-tanpoi")
				if err != nil {
					out = err.Error() + "\n"
				} else {
					ssOut = append(ssOut, out)
				}
				threads := fmt.Sprintf("sidecar's PID: %v\n", pidErr)
				if pidErr == nil {
					threads = procThreads(pipyPID)
					if hang, err := pipyStuckInExit(pipyPID); err != nil {
						threads += fmt.Sprintf("stuck in its exit? %v\n", err)
					} else if hang != "" {
						exitHang = hang
						threads += hang + "\n"
					}
				}
				sockets = append(sockets, fmt.Sprintf("--- %s after the scale-down: ss -tanpoi in the pod's network namespace:\n%s--- the sidecar's log:\n%s--- Pipy's threads:\n%s",
					at, out, containerLog(ctx, cs, app, "sidecar"), threads))
			}
		})
		c.WaitFor(t, "the app pod and its bootstrap Secret to be gone", time.Duration(grace+30)*time.Second, func(ctx context.Context) error {
			_, perr := cs.CoreV1().Pods(meshNS).Get(ctx, app.Name, metav1.GetOptions{})
			_, serr := cs.CoreV1().Secrets(meshNS).Get(ctx, secret, metav1.GetOptions{})
			if apierrors.IsNotFound(perr) && apierrors.IsNotFound(serr) {
				return nil
			}
			return fmt.Errorf("pod: %v, secret: %v", perr, serr)
		})
		took := time.Since(start)
		// Every container must stop on its own signal, none be killed at the
		// end of the grace period (exit 137): the app and fsm-healthcheck on
		// SIGTERM, Pipy on gkill's SIGINT.
		got := stops()
		// Set when the sidecar was killed for a reason of Pipy's named below.
		pipyNamed := false
		for _, name := range containerNames(app.Spec.Containers) {
			tm, ok := got[name]
			if !ok {
				t.Errorf("container %s: no terminated state seen before the pod went", name)
				continue
			}
			t.Logf("container %s exited %d (%s) %s after the scale-down", name, tm.ExitCode, tm.Reason, tm.FinishedAt.Sub(start).Round(100*time.Millisecond))
			if tm.ExitCode != 137 {
				continue
			}
			snap.Wait()
			if name == "sidecar" {
				// Pipy got gkill's SIGINT and was draining, held by a
				// downstream connection from another host or pod: what
				// gracefulExitUntilDownstreamEnds asks of it, not something
				// the injection made; named, not failed.
				if held, outside := pipyDrainHeld(ssOut, app.Status.PodIP); outside {
					pipyNamed = true
					t.Logf("the sidecar stopped listening on its signal and was killed at the end of the grace period while draining connections from outside the pod: %v\n%s", held, strings.Join(sockets, "\n"))
					continue
				}
				// Pipy acted on the signal (its main returned: only the
				// threads of its exit are left) and hung in its own static
				// destructors: Pipy's bug, whatever injected the pod
				// (docs/testing.md, "Known Pipy issue"); named, not failed.
				if exitHang != "" {
					pipyNamed = true
					t.Logf("the sidecar stopped on its signal and was killed at the end of the grace period, stuck in Pipy's own exit: %s\n%s", exitHang, strings.Join(sockets, "\n"))
					continue
				}
			}
			t.Errorf("container %s was killed (exit 137, %s) at the end of the grace period; what held it:\n%s", name, tm.Reason, strings.Join(sockets, "\n"))
		}
		// A well-behaved pod: the app drains for at most 5 s
		// (toolcmd.ServeUntilSignal), Pipy stops once its connections close,
		// then the kubelet's status update, the API object's removal and the
		// garbage collector's Secret delete take a second or two. 15 s leaves
		// room for a loaded machine and is half the grace period, so a
		// container left to the kubelet's SIGKILL fails here.
		const wellBehaved = 15 * time.Second
		if took > wellBehaved && !pipyNamed {
			snap.Wait()
			t.Errorf("pod and Secret gone after %s, want within %s (grace period %ds); the pod meanwhile:\n%s", took, wellBehaved, grace, strings.Join(sockets, "\n"))
		} else {
			t.Logf("pod and Secret gone %s after the scale-down (grace period %ds)", took.Round(100*time.Millisecond), grace)
		}
	})

	t.Run("a MeshConfig change reaches the next pod", func(t *testing.T) {
		patchMeshConfig(ctx, t, c, `{"spec":{"sidecar":{"logLevel":"debug"},"traffic":{"outboundPortExclusionList":[6379]}}}`)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "after-meshconfig", Annotations: map[string]string{"flomesh.io/sidecar-injection": "enabled"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{appContainer(
				// HTTPS readiness: rewritten to the healthcheck container.
				&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS}}, PeriodSeconds: 1},
				nil, nil)}},
		}
		// The injector's MeshConfig informer: dry-run until it answers
		// with the new settings (admission runs on dry-run).
		c.WaitFor(t, "the injector to see the MeshConfig change", time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(meshNS).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return err
			}
			if s := findContainer(p.Spec.Containers, "sidecar"); s == nil || !slices.Contains(s.Args, "--log-level=debug") {
				return fmt.Errorf("sidecar %v", s)
			}
			return nil
		})
		p := createPod(ctx, t, cs, pod)
		if !strings.Contains(initScript(t, p), "6379") {
			t.Errorf("fsm-init script lacks the MeshConfig's outbound port exclusion 6379:\n%s", initScript(t, p))
		}
		waitPodReady(t, c, p.Name)
	})

	t.Run("enablePrivilegedInitContainer: a privileged fsm-init on this node", func(t *testing.T) {
		patchMeshConfig(ctx, t, c, `{"spec":{"sidecar":{"enablePrivilegedInitContainer":true}}}`)
		defer patchMeshConfig(ctx, t, c, `{"spec":{"sidecar":{"enablePrivilegedInitContainer":false}}}`)
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "privileged-init", Annotations: map[string]string{"flomesh.io/sidecar-injection": "enabled"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{appContainer(
				&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				nil, nil)}},
		}
		c.WaitFor(t, "the injector to see enablePrivilegedInitContainer", time.Minute, func(ctx context.Context) error {
			p, err := cs.CoreV1().Pods(meshNS).Create(ctx, pod.DeepCopy(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err != nil {
				return err
			}
			if ic := findContainer(p.Spec.InitContainers, "fsm-init"); ic == nil || ic.SecurityContext == nil || !ptr.Deref(ic.SecurityContext.Privileged, false) {
				return fmt.Errorf("fsm-init %v", ic)
			}
			return nil
		})
		p := createPod(ctx, t, cs, pod)
		var st *corev1.ContainerStatus
		c.WaitFor(t, "the privileged fsm-init to end or fail", 2*time.Minute, func(ctx context.Context) error {
			got, err := cs.CoreV1().Pods(meshNS).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			p = got
			st = initStatus(p, "fsm-init")
			switch {
			case st == nil:
				return fmt.Errorf("no fsm-init status: %s", podReasons(p))
			case st.State.Terminated != nil:
				return nil
			case st.State.Waiting != nil && st.State.Waiting.Reason != "PodInitializing" && st.State.Waiting.Reason != "ContainerCreating":
				return nil
			}
			return fmt.Errorf("fsm-init %+v", st.State)
		})
		t.Logf("privileged fsm-init: state %+v; pod: %s; events: %s", st.State, podReasons(p), podEvents(ctx, cs, p))
		if tm := st.State.Terminated; tm == nil || tm.ExitCode != 0 {
			t.Fatalf("privileged fsm-init did not exit 0: %+v", st.State)
		}
		// containerd gives a privileged container the capabilities it holds
		// itself, not every capability there is: on this machine that set
		// lacks CAP_SYS_RESOURCE (node-recipe.md), and runc starts it.
		bounding := containerBounding(ctx, t, c, st.ContainerID)
		hostHas := hostBoundingHas(t, capSysResource)
		t.Logf("privileged fsm-init's bounding set (%d capabilities): %v; host bounding set has CAP_SYS_RESOURCE: %v", len(bounding), bounding, hostHas)
		for _, want := range []string{"CAP_NET_ADMIN", "CAP_SYS_ADMIN"} {
			if !slices.Contains(bounding, want) {
				t.Errorf("privileged fsm-init lacks %s: %v", want, bounding)
			}
		}
		if got := slices.Contains(bounding, "CAP_SYS_RESOURCE"); got != hostHas {
			t.Errorf("privileged fsm-init has CAP_SYS_RESOURCE %v, the host's bounding set %v: want the same", got, hostHas)
		}
		waitPodReady(t, c, p.Name)
	})

	t.Run("figures: pod create to Ready, plain vs injected vs native sidecar", func(t *testing.T) {
		n := 10
		if v, err := strconv.Atoi(os.Getenv("FSM_NODE_MESHED_PODS")); err == nil && v > 0 {
			n = v
		}
		const plainNS = "plain-app"
		c.CreateNamespace(t, plainNS, nil)
		spec := corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{appContainer(
				&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
				nil, nil)},
		}
		inject := map[string]string{"flomesh.io/sidecar-injection": "enabled"}
		native := map[string]string{"flomesh.io/sidecar-injection": "enabled", "flomesh.io/sidecar-native": "true"}
		plain := readyTimes(ctx, t, c, plainNS, "plain", n, spec, nil)
		injected := readyTimes(ctx, t, c, meshNS, "injected", n, spec, inject)
		nat := readyTimes(ctx, t, c, meshNS, "native", n, spec, native)
		for _, f := range []struct {
			name string
			d    []time.Duration
		}{{"plain", plain}, {"injected", injected}, {"injected, native sidecar", nat}} {
			t.Logf("figures: %d %s pods create->Ready p50 %s p99 %s", len(f.d), f.name,
				percentile(f.d, 0.50).Round(10*time.Millisecond), percentile(f.d, 0.99).Round(10*time.Millisecond))
		}
	})
}

// capSysResource is CAP_SYS_RESOURCE's number (linux/capability.h).
const capSysResource = 24

// containerBounding is the bounding capability set containerd gave a
// container (its OCI spec, from crictl inspect; exited containers too).
func containerBounding(ctx context.Context, t *testing.T, c *node.Cluster, containerID string) []string {
	t.Helper()
	_, id, _ := strings.Cut(containerID, "://")
	out, err := c.Crictl(ctx, "inspect", id)
	if err != nil {
		t.Fatalf("crictl inspect %s: %v: %s", id, err, out)
	}
	var info struct {
		Info struct {
			RuntimeSpec struct {
				Process struct {
					Capabilities struct {
						Bounding []string `json:"bounding"`
					} `json:"capabilities"`
				} `json:"process"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("crictl inspect %s: %v", id, err)
	}
	return info.Info.RuntimeSpec.Process.Capabilities.Bounding
}

// hostBoundingHas says whether this process's bounding set (CapBnd in
// /proc/self/status) holds capability number capNum; the test runs as root
// beside containerd, with the same set.
func hostBoundingHas(t *testing.T, capNum uint) bool {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatalf("CapBnd %q: %v", v, err)
			}
			return mask&(1<<capNum) != 0
		}
	}
	t.Fatal("no CapBnd in /proc/self/status")
	return false
}

// patchMeshConfig merge-patches the chart's MeshConfig.
func patchMeshConfig(ctx context.Context, t *testing.T, c *node.Cluster, patch string) {
	t.Helper()
	mc := &unstructured.Unstructured{}
	mc.SetGroupVersionKind(schema.GroupVersionKind{Group: "config.flomesh.io", Version: "v1alpha3", Kind: "MeshConfig"})
	mc.SetNamespace(chartNS)
	mc.SetName("fsm-mesh-config")
	if err := c.Client.Patch(ctx, mc, client.RawPatch(types.MergePatchType, []byte(patch))); err != nil {
		t.Fatalf("patching MeshConfig with %s: %v", patch, err)
	}
}

// podEvents lists the events of pod p, oldest first, one per line.
func podEvents(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod) string {
	evs, err := cs.CoreV1().Events(p.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", p.Name).String(),
	})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "\n  %s %s x%d: %s", e.Type, e.Reason, e.Count, e.Message)
	}
	return b.String()
}

// watchStops watches pod p from now on and returns a function that reports
// the terminated state last seen for each of its containers. A watch sees
// every status the kubelet writes, including the last one before the API
// object goes, which polling may miss.
func watchStops(ctx context.Context, t *testing.T, cs kubernetes.Interface, p *corev1.Pod) func() map[string]corev1.ContainerStateTerminated {
	t.Helper()
	// From the pod's current version: p may be older than the apiserver's
	// watch history (410 Gone).
	cur, err := cs.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, err := cs.CoreV1().Pods(p.Namespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("metadata.name", p.Name).String(), ResourceVersion: cur.ResourceVersion,
	})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	seen := map[string]corev1.ContainerStateTerminated{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ev := range w.ResultChan() {
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			mu.Lock()
			for _, st := range pod.Status.ContainerStatuses {
				if st.State.Terminated != nil {
					seen[st.Name] = *st.State.Terminated
				}
			}
			mu.Unlock()
			if ev.Type == watch.Deleted {
				return
			}
		}
	}()
	return func() map[string]corev1.ContainerStateTerminated {
		select {
		case <-done:
		case <-time.After(5 * time.Second): // the Deleted event is late or lost
		}
		w.Stop()
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(seen)
	}
}

// readyTimes creates n pods from template in ns at once and returns how
// long each took from its create call to the first poll (every 200 ms)
// that saw it Ready; the pods are deleted before it returns.
func readyTimes(ctx context.Context, t *testing.T, c *node.Cluster, ns, prefix string, n int, template corev1.PodSpec, ann map[string]string) []time.Duration {
	t.Helper()
	cs := c.Clientset
	created := map[string]time.Time{}
	for i := range n {
		name := fmt.Sprintf("%s-%d", prefix, i)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"figures": prefix}, Annotations: ann}, Spec: template}
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		created[name] = time.Now()
	}
	ready := map[string]time.Duration{}
	c.WaitFor(t, fmt.Sprintf("%d %s pods to be Ready", n, prefix), 10*time.Minute, func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "figures=" + prefix})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			p := &pods.Items[i]
			if _, seen := ready[p.Name]; !seen && podReady(p) {
				ready[p.Name] = time.Since(created[p.Name])
			}
		}
		if len(ready) < n {
			return fmt.Errorf("%d of %d Ready", len(ready), n)
		}
		return nil
	})
	if err := cs.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "figures=" + prefix}); err != nil {
		t.Fatal(err)
	}
	c.WaitFor(t, prefix+" pods to be gone", 5*time.Minute, func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "figures=" + prefix})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d left", len(pods.Items))
		}
		return nil
	})
	var d []time.Duration
	for _, v := range ready {
		d = append(d, v)
	}
	return d
}

// logPodUsage logs what the kubelet's stats summary (/stats/summary through
// the apiserver's node proxy) says pod p uses: each running container's
// working set, RSS and CPU since it started, and the pod cgroup's CPU beyond
// them -- the exited init container fsm-init (and the pause sandbox, which
// uses next to nothing): its own cgroup is gone with it, so this is the
// only trace of its CPU, and its memory is not recoverable.
func logPodUsage(ctx context.Context, t *testing.T, c *node.Cluster, p *corev1.Pod) {
	t.Helper()
	raw, err := c.Clientset.CoreV1().RESTClient().Get().Resource("nodes").Name(node.NodeName).
		SubResource("proxy").Suffix("stats/summary").DoRaw(ctx)
	if err != nil {
		t.Fatalf("kubelet stats summary: %v", err)
	}
	var sum statsv1alpha1.Summary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatalf("kubelet stats summary: %v", err)
	}
	deref := func(v *uint64) uint64 { return ptr.Deref(v, 0) }
	for _, ps := range sum.Pods {
		if ps.PodRef.Namespace != p.Namespace || ps.PodRef.Name != p.Name {
			continue
		}
		var containersCPU uint64
		for _, cs := range ps.Containers {
			var cpu, ws, rss uint64
			if cs.CPU != nil {
				cpu = deref(cs.CPU.UsageCoreNanoSeconds)
			}
			if cs.Memory != nil {
				ws, rss = deref(cs.Memory.WorkingSetBytes), deref(cs.Memory.RSSBytes)
			}
			containersCPU += cpu
			t.Logf("figures: pod %s container %s (stats summary): working set %.1f MiB, RSS %.1f MiB, CPU %.3f s since start",
				p.Name, cs.Name, float64(ws)/(1<<20), float64(rss)/(1<<20), float64(cpu)/1e9)
		}
		if ps.CPU != nil && deref(ps.CPU.UsageCoreNanoSeconds) >= containersCPU {
			t.Logf("figures: pod %s CPU beyond its running containers (fsm-init and the sandbox): %.3f s",
				p.Name, float64(deref(ps.CPU.UsageCoreNanoSeconds)-containersCPU)/1e9)
		}
		return
	}
	t.Errorf("kubelet stats summary has no pod %s/%s", p.Namespace, p.Name)
}

// sidecarUsage is the kubelet's view (CRI stats) of the running sidecar
// containers: memory working set and CPU in nanocores, summed over them.
func sidecarUsage(ctx context.Context, t *testing.T, c *node.Cluster) (n int, memBytes, nanoCores uint64) {
	t.Helper()
	out, err := c.Crictl(ctx, "stats", "--label", "io.kubernetes.container.name=sidecar", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Stats []struct {
			CPU struct {
				UsageNanoCores struct{ Value string } `json:"usageNanoCores"`
			} `json:"cpu"`
			Memory struct {
				WorkingSetBytes struct{ Value string } `json:"workingSetBytes"`
			} `json:"memory"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("crictl stats: %v: %s", err, out)
	}
	for _, st := range s.Stats {
		m, _ := strconv.ParseUint(st.Memory.WorkingSetBytes.Value, 10, 64)
		cpu, _ := strconv.ParseUint(st.CPU.UsageNanoCores.Value, 10, 64)
		n, memBytes, nanoCores = n+1, memBytes+m, nanoCores+cpu
	}
	return n, memBytes, nanoCores
}

// installChartReady installs the chart as TestChartOnNode does and waits
// for the webhooks to serve.
func installChartReady(ctx context.Context, t *testing.T, c *node.Cluster) {
	t.Helper()
	installChart(ctx, t, c)
	c.WaitFor(t, "deployment fsm-webhooks to be Ready", 4*time.Minute, func(ctx context.Context) error {
		d, err := c.Clientset.AppsV1().Deployments(chartNS).Get(ctx, "fsm-webhooks", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Status.ReadyReplicas != *d.Spec.Replicas {
			return fmt.Errorf("ready %d of %d: %s", d.Status.ReadyReplicas, *d.Spec.Replicas, podsSummary(ctx, c.Clientset, chartNS))
		}
		return nil
	})
}

// startRepo runs the pipy-repo image as FSM's fsm-pipy-repo behind the
// fsm-controller Service on 6060 and returns its URL from the host.
func startRepo(ctx context.Context, t *testing.T, c *node.Cluster) string {
	t.Helper()
	cs := c.Clientset
	labels := map[string]string{"app": "fsm-pipy-repo"}
	port := intstr.FromInt32(meshimages.RepoPort)
	_, err := cs.AppsV1().Deployments(chartNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-pipy-repo"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "pipy-repo", Image: meshimages.RepoImage, ImagePullPolicy: corev1.PullNever,
					Ports: []corev1.ContainerPort{{Name: "repo", ContainerPort: meshimages.RepoPort}},
					// A no-GUI build answers 404 on /.
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/api/v1/repo", Port: port}}, PeriodSeconds: 1},
				}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(chartNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-controller"},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Name: "repo", Port: meshimages.RepoPort, TargetPort: port}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var url string
	c.WaitFor(t, "the pipy repo to be Ready", 2*time.Minute, func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods(chartNS).List(ctx, metav1.ListOptions{LabelSelector: "app=fsm-pipy-repo"})
		if err != nil {
			return err
		}
		for _, p := range pods.Items {
			if podReady(&p) {
				url = fmt.Sprintf("http://%s:%d", p.Status.PodIP, meshimages.RepoPort)
				return nil
			}
		}
		return fmt.Errorf("not Ready: %s", podsSummary(ctx, cs, chartNS))
	})
	return url
}

// startApp runs the injected app Deployment (one replica) and its Service
// and returns its pod once Ready. Its probes cover the rewrites: HTTP
// readiness (sidecar's 15902), TCP startup (fsm-healthcheck's 15904) and
// gRPC liveness (untouched, through the inbound redirect).
func startApp(ctx context.Context, t *testing.T, c *node.Cluster) *corev1.Pod {
	t.Helper()
	cs := c.Clientset
	labels := map[string]string{"app": "app"}
	_, err := cs.AppsV1().Deployments(meshNS).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: map[string]string{
					"flomesh.io/sidecar-injection":           "enabled",
					"flomesh.io/inbound-port-exclusion-list": "9000",
				}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{appContainer(
					&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString("http")}}, PeriodSeconds: 1},
					&corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9090}}, PeriodSeconds: 2, FailureThreshold: 5},
					&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(9000)}}, PeriodSeconds: 1, FailureThreshold: 60},
				)}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(meshNS).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{
			{Name: "http", Port: 8080, TargetPort: intstr.FromInt32(8080)},
			{Name: "tcp", Port: 9000, TargetPort: intstr.FromInt32(9000)},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	c.WaitFor(t, "the injected app Deployment to be Ready", 3*time.Minute, func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods(meshNS).List(ctx, metav1.ListOptions{LabelSelector: "app=app"})
		if err != nil {
			return err
		}
		for i := range pods.Items {
			if podReady(&pods.Items[i]) {
				pod = &pods.Items[i]
				return nil
			}
		}
		return fmt.Errorf("not Ready: %s", podsSummary(ctx, cs, meshNS))
	})
	return pod
}

func appContainer(readiness, liveness, startup *corev1.Probe) corev1.Container {
	return corev1.Container{
		Name: "app", Image: meshimages.AppImage, ImagePullPolicy: corev1.PullNever,
		Ports: []corev1.ContainerPort{
			{Name: "http", ContainerPort: 8080}, {Name: "https", ContainerPort: 8443},
			{Name: "tcp", ContainerPort: 9000}, {Name: "grpc", ContainerPort: 9090},
		},
		ReadinessProbe: readiness, LivenessProbe: liveness, StartupProbe: startup,
	}
}

func meshtool(name string, args ...string) corev1.Container {
	return corev1.Container{Name: name, Image: meshimages.AppImage, ImagePullPolicy: corev1.PullNever, Args: args}
}

func createPod(ctx context.Context, t *testing.T, cs kubernetes.Interface, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	p, err := cs.CoreV1().Pods(meshNS).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitPodReady(t *testing.T, c *node.Cluster, name string) {
	t.Helper()
	c.WaitFor(t, "pod "+name+" to be Ready", 3*time.Minute, func(ctx context.Context) error {
		p, err := c.Clientset.CoreV1().Pods(meshNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !podReady(p) {
			return fmt.Errorf("phase %s: %s", p.Status.Phase, podReasons(p))
		}
		return nil
	})
}

// publisher publishes the test codebase for every injected pod of a
// namespace, once, as FSM's controller does for each proxy.
type publisher struct {
	repo   string
	mainJS []byte

	mu        sync.Mutex
	published map[string]time.Time
	errs      []error
}

func (p *publisher) run(ctx context.Context, cs kubernetes.Interface, ns string) {
	for {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: proxyUUIDLabel})
		if err == nil {
			for i := range pods.Items {
				path := codebasePath(&pods.Items[i])
				if _, done := p.publishedAt(path); done {
					continue
				}
				if err := publish(ctx, p.repo, path, p.mainJS); err != nil {
					p.mu.Lock()
					p.errs = append(p.errs, err)
					p.mu.Unlock()
					continue
				}
				p.mu.Lock()
				p.published[path] = time.Now()
				p.mu.Unlock()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (p *publisher) publishedAt(path string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.published[path]
	return at, ok
}

func (p *publisher) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) == 0 {
		return nil
	}
	return fmt.Errorf("%d failures, first: %w", len(p.errs), p.errs[0])
}

// direct reaches pod addresses on the node's bridge, never through a proxy
// from the environment.
var direct = &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: 10 * time.Second}

// publish creates the codebase at path in a Pipy repo with main.js as its
// entry (Pipy's repo API, ../shared/pipy/BUILD.md).
func publish(ctx context.Context, repo, path string, mainJS []byte) error {
	for _, r := range []struct {
		method, url string
		body        []byte
	}{
		{http.MethodPost, repo + "/api/v1/repo/" + path, []byte("{}")},
		{http.MethodPost, repo + "/api/v1/repo-files/" + path + "/main.js", mainJS},
		{http.MethodPatch, repo + "/api/v1/repo/" + path, []byte(`{"main":"/main.js","version":"2"}`)},
	} {
		req, err := http.NewRequestWithContext(ctx, r.method, r.url, bytes.NewReader(r.body))
		if err != nil {
			return err
		}
		resp, err := direct.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: %w", r.method, r.url, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode >= 300 {
			return fmt.Errorf("%s %s: %s: %s", r.method, r.url, resp.Status, b)
		}
	}
	return nil
}

// counts reads the test codebase's counters from a sidecar's metrics port
// (15010, which the inbound rules never redirect), from the host.
func counts(ctx context.Context, t *testing.T, podIP string) sidecarCounts {
	t.Helper()
	url := fmt.Sprintf("http://%s:15010/", podIP)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	// No idle keep-alive left behind: Pipy's graceful stop (gkill's
	// SIGINT) waits for every downstream connection to close, so one held
	// by the test kept a deleted pod's sidecar up until the kubelet's
	// SIGKILL at the end of the grace period.
	req.Close = true
	resp, err := direct.Do(req)
	if err != nil {
		t.Fatalf("sidecar metrics %s: %v", url, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var c sidecarCounts
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		t.Fatalf("sidecar metrics %s: %v", url, err)
	}
	return c
}

// initScript is the rule set the injector gave fsm-init (the heredoc of
// its `sh -c` argument).
func initScript(t *testing.T, p *corev1.Pod) string {
	t.Helper()
	ic := findContainer(p.Spec.InitContainers, "fsm-init")
	if ic == nil || len(ic.Args) != 2 {
		t.Fatalf("pod %s: no fsm-init with sh -c SCRIPT: %+v", p.Name, ic)
	}
	return ic.Args[1]
}

// podNAT is iptables-save's nat table of the pod's network namespace,
// read on the host through the sandbox's netns path.
func podNAT(ctx context.Context, t *testing.T, c *node.Cluster, p *corev1.Pod) string {
	t.Helper()
	out, err := inPodNetns(ctx, c, p, "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// inPodNetns runs a host command in the network namespace of pod p's
// sandbox (found through crictl inspectp) and returns its output.
// pipyListenerPorts are the sidecar's listeners (test codebase, main.js):
// a socket of Pipy's with one of these as its local port is a downstream
// connection, which Pipy's graceful stop waits for; its other sockets
// (upstreams, the repo) do not hold the stop.
var pipyListenerPorts = []string{"15000", "15001", "15003", "15010", "15901", "15902", "15903"}

// pipyDrainHeld reads `ss -tanpoi` snapshots of a terminating meshed pod's
// network namespace, in order. It reports outside when Pipy had stopped
// listening on its proxy ports by the first (its stop signal arrived) and
// every downstream connection it still held in the last came from outside
// the pod (neither loopback nor podIP); held lists those connections.
func pipyDrainHeld(snaps []string, podIP string) (held []string, outside bool) {
	if len(snaps) == 0 {
		return nil, false
	}
	type sock struct{ state, local, peer string }
	parse := func(out string) []sock {
		var socks []sock
		for line := range strings.Lines(out) {
			f := strings.Fields(line)
			if len(f) < 6 || !strings.Contains(line, `"pipy"`) {
				continue
			}
			socks = append(socks, sock{state: f[0], local: f[3], peer: f[4]})
		}
		return socks
	}
	port := func(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
	host := func(addr string) string {
		return strings.TrimPrefix(strings.Trim(addr[:max(strings.LastIndexByte(addr, ':'), 0)], "[]"), "::ffff:")
	}
	for _, sk := range parse(snaps[0]) {
		if sk.state == "LISTEN" && (port(sk.local) == "15001" || port(sk.local) == "15003") {
			return nil, false // still listening: the signal did not stop it
		}
	}
	for _, sk := range parse(snaps[len(snaps)-1]) {
		if sk.state != "ESTAB" || !slices.Contains(pipyListenerPorts, port(sk.local)) {
			continue
		}
		if h := host(sk.peer); h == "127.0.0.1" || h == "::1" || h == podIP {
			return nil, false // held from inside the pod
		}
		held = append(held, sk.local+" <- "+sk.peer)
	}
	return held, len(held) > 0
}

// procThreads lists the threads of process pid (a host PID): each one's
// name, state, kernel wait channel and /proc syscall line (number, arguments,
// stack and instruction pointers), what is left to read without a debugger
// of a sidecar that outlives its stop signal.
func procThreads(pid int) string {
	var b strings.Builder
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		return fmt.Sprintf("pid %d: no threads (%v)\n", pid, err)
	}
	for _, task := range tasks {
		comm, _ := os.ReadFile(task + "/comm")
		wchan, _ := os.ReadFile(task + "/wchan")
		syscall, _ := os.ReadFile(task + "/syscall")
		stat, _ := os.ReadFile(task + "/stat")
		state := ""
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
			state = string(stat[i+2 : i+3])
		}
		fmt.Fprintf(&b, "pid %d tid %s %q state %s wchan %s syscall %s\n", pid, filepath.Base(task),
			strings.TrimSpace(string(comm)), state, wchan, strings.TrimSpace(string(syscall)))
	}
	return b.String()
}

// containerPID is the host PID of a running container's first process
// (crictl inspect's info.pid).
func containerPID(ctx context.Context, c *node.Cluster, st *corev1.ContainerStatus) (int, error) {
	if st == nil || st.ContainerID == "" {
		return 0, errors.New("no container ID in the pod's status")
	}
	_, id, _ := strings.Cut(st.ContainerID, "://")
	out, err := c.Crictl(ctx, "inspect", id)
	if err != nil {
		return 0, fmt.Errorf("crictl inspect %s: %w: %s", id, err, out)
	}
	var info struct {
		Info struct {
			PID int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("crictl inspect %s: %w", id, err)
	}
	if info.Info.PID == 0 {
		return 0, fmt.Errorf("crictl inspect %s: no pid", id)
	}
	return info.Info.PID, nil
}

func inPodNetns(ctx context.Context, c *node.Cluster, p *corev1.Pod, cmd ...string) (string, error) {
	id, err := c.Crictl(ctx, "pods", "--name", p.Name, "--namespace", p.Namespace, "--state", "ready", "-q")
	if err != nil {
		return "", err
	}
	out, err := c.Crictl(ctx, "inspectp", strings.TrimSpace(string(id)))
	if err != nil {
		return "", err
	}
	var info struct {
		Info struct {
			RuntimeSpec struct {
				Linux struct {
					Namespaces []struct{ Type, Path string } `json:"namespaces"`
				} `json:"linux"`
			} `json:"runtimeSpec"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("crictl inspectp: %w", err)
	}
	for _, ns := range info.Info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" {
			b, err := exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path}, cmd...)...).CombinedOutput()
			if err != nil {
				return "", fmt.Errorf("%s in %s: %w: %s", strings.Join(cmd, " "), ns.Path, err, b)
			}
			return string(b), nil
		}
	}
	return "", fmt.Errorf("pod %s: no network namespace in %s", p.Name, out)
}

// natRuleCounts counts the -A rules per chain of an iptables-restore or
// iptables-save text (the two spell matches differently, so rules are
// compared by count per chain, not by text).
func natRuleCounts(rules string) map[string]int {
	n := map[string]int{}
	for _, line := range strings.Split(rules, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "-A" {
			n[f[1]]++
		}
	}
	return n
}

func findContainer(cs []corev1.Container, name string) *corev1.Container {
	for i := range cs {
		if cs[i].Name == name {
			return &cs[i]
		}
	}
	return nil
}

func containerNames(cs []corev1.Container) []string {
	var n []string
	for _, c := range cs {
		n = append(n, c.Name)
	}
	return n
}

func initStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.InitContainerStatuses {
		if p.Status.InitContainerStatuses[i].Name == name {
			return &p.Status.InitContainerStatuses[i]
		}
	}
	return nil
}

func containerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == name {
			return &p.Status.ContainerStatuses[i]
		}
	}
	return nil
}

func containerLog(ctx context.Context, cs kubernetes.Interface, p *corev1.Pod, name string) string {
	b, err := cs.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: name}).DoRaw(ctx)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func net2(ip string, port int) string { return ip + ":" + strconv.Itoa(port) }

// percentile of sorted durations (nearest rank).
func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	i := int(p*float64(len(d))+0.999999) - 1
	return d[max(0, min(i, len(d)-1))]
}

// meshedPodImages returns the images meshed pods need, built here or, for
// those FSM_WEBHOOKS_*_IMAGE names, pulled (the pulls: name the pods use to
// reference pulled); Pipy is built into the asset cache when an image needs it.
func meshedPodImages(ctx context.Context, t *testing.T) ([]images.Spec, map[string]string) {
	t.Helper()
	// The fsm-init image takes the host's Debian iptables, which Start
	// installs: these images are built before Start runs.
	if err := node.EnsureHostPackages(ctx, os.Stderr); err != nil {
		t.Fatal(err)
	}
	pulls, err := meshimages.Published(os.Getenv)
	if err != nil {
		t.Fatal(err)
	}
	var pipyBin string
	if meshimages.NeedsPipy(pulls) {
		if pipyBin, err = meshassets.Pipy(ctx, meshassets.PipySource(testenv.RepoRoot()), os.Stderr); err != nil {
			t.Fatalf("Pipy %s is needed for meshed pods: %v", meshassets.PipyVersion, err)
		}
	}
	specs, err := meshimages.Specs(ctx, testenv.RepoRoot(), pipyBin, t.TempDir(), pulls)
	if err != nil {
		t.Fatal(err)
	}
	return specs, pulls
}
