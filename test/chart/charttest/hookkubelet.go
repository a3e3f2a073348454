package charttest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	chart "github.com/flomesh-io/fsm-webhooks/charts/fsm-webhooks"
)

// CRDUpgradeJob is the name of the chart's pre-upgrade crd-upgrade hook Job.
const CRDUpgradeJob = "fsm-webhooks-crd-upgrade"

// hookKubelet stands in for the kubelet and the Job controller on an
// apiserver without Nodes (envtest), where Helm would otherwise wait for a
// hook Job until its timeout. It runs the one hook whose work a test can do
// in-process, the crd-upgrade Job's `fsm-webhooks install-crds`, as the
// Job's ServiceAccount (impersonated: the hook's own RBAC is what is
// exercised), then records the Job Complete or Failed as the Job controller
// would. Every other Job is left alone.
type hookKubelet struct {
	cfg *rest.Config
	cs  kubernetes.Interface

	mu   sync.Mutex
	errs error // why an emulated Job failed, or its outcome went unrecorded
}

func newHookKubelet(kubeconfig []byte) (*hookKubelet, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w", err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &hookKubelet{cfg: cfg, cs: cs}, nil
}

// during runs action, emulating the kubelet meanwhile if the cluster has no
// Node (a real cluster runs the Jobs itself).
func (k *hookKubelet) during(ctx context.Context, action func() error) error {
	nodes, err := k.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return fmt.Errorf("listing nodes: %w", err)
	}
	if len(nodes.Items) > 0 {
		return action()
	}
	k.mu.Lock()
	k.errs = nil // this action's only
	k.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		k.loop(ctx)
	}()
	err = action()
	cancel()
	<-done
	k.mu.Lock()
	defer k.mu.Unlock()
	return errors.Join(err, k.errs)
}

func (k *hookKubelet) loop(ctx context.Context) {
	for {
		jobs, err := k.cs.BatchV1().Jobs(metav1.NamespaceAll).List(ctx, metav1.ListOptions{})
		if err == nil {
			for i := range jobs.Items {
				if job := &jobs.Items[i]; job.Name == CRDUpgradeJob && !finished(job) {
					k.run(ctx, job)
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func finished(job *batchv1.Job) bool {
	for _, c := range job.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// run does what the Job's container would and records the outcome.
func (k *hookKubelet) run(ctx context.Context, job *batchv1.Job) {
	start := metav1.Now()
	runErr := k.installCRDs(ctx, job)
	if ctx.Err() != nil {
		return
	}
	end := metav1.Now()
	job.Status.StartTime = &start
	if runErr == nil {
		job.Status.Succeeded = 1
		job.Status.CompletionTime = &end
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, LastTransitionTime: end, LastProbeTime: end},
			{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: end, LastProbeTime: end},
		}
	} else {
		job.Status.Failed = 1
		msg := runErr.Error()
		job.Status.Conditions = []batchv1.JobCondition{
			{Type: batchv1.JobFailureTarget, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: msg, LastTransitionTime: end, LastProbeTime: end},
			{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: "BackoffLimitExceeded", Message: msg, LastTransitionTime: end, LastProbeTime: end},
		}
	}
	_, err := k.cs.BatchV1().Jobs(job.Namespace).UpdateStatus(ctx, job, metav1.UpdateOptions{})
	k.mu.Lock()
	defer k.mu.Unlock()
	if err != nil {
		k.errs = errors.Join(k.errs, fmt.Errorf("recording Job %s/%s finished (run error: %v): %w", job.Namespace, job.Name, runErr, err))
	}
	// Helm reports only the Job's failure reason; the cause goes with it.
	if runErr != nil {
		k.errs = errors.Join(k.errs, fmt.Errorf("job %s/%s, run in the kubelet's place: %w", job.Namespace, job.Name, runErr))
	}
}

// installCRDs is `fsm-webhooks install-crds` with the Job's credentials:
// the command's work is chart.ApplyCRDs through a client of the pod's
// ServiceAccount. The Job's arguments must be that command's.
func (k *hookKubelet) installCRDs(ctx context.Context, job *batchv1.Job) error {
	spec := job.Spec.Template.Spec
	if len(spec.Containers) != 1 {
		return fmt.Errorf("job %s has %d containers, want 1", job.Name, len(spec.Containers))
	}
	args := spec.Containers[0].Args
	if len(args) == 0 || args[0] != "install-crds" {
		return fmt.Errorf("job %s runs %q, want install-crds", job.Name, args)
	}
	timeout := 2 * time.Minute
	for _, a := range args[1:] {
		v, ok := strings.CutPrefix(a, "--timeout=")
		if !ok {
			return fmt.Errorf("job %s: unexpected argument %q to install-crds", job.Name, a)
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("job %s: invalid --timeout %q", job.Name, v)
		}
		timeout = d
	}
	sa := spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	cfg := rest.CopyConfig(k.cfg)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + job.Namespace + ":" + sa,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + job.Namespace, "system:authenticated"},
	}
	s := runtime.NewScheme()
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		return err
	}
	c, err := client.New(cfg, client.Options{Scheme: s})
	if err != nil {
		return fmt.Errorf("client as %s: %w", cfg.Impersonate.UserName, err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return chart.ApplyCRDs(ctx, c)
}

func isDiscoveryLag(err error) bool {
	return strings.Contains(err.Error(), "ensure CRDs are installed first")
}

func sleep(ctx context.Context, seconds int) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(seconds) * time.Second):
		return nil
	}
}
