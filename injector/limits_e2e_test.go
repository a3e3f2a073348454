package injector_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp/reviewhttptest"
)

// TestNamespaceLimitsRefuseBeforeTheSecret: behind a real apiserver (its
// LimitRanger and ResourceQuota plugins on), a namespace whose LimitRange
// or compute ResourceQuota the injected containers break had the pod
// refused after the injector wrote its bootstrap Secret (left to the
// orphan sweep, one per retry of its owner), with a message naming no
// container ("memory max limit to request ratio per Container is 2, but no
// request is specified or request is 0") or containers the user never
// wrote. The injector, reading LimitRanges and ResourceQuotas from its
// informers (CachedLimits), now refuses it first: a denial naming the
// container, the LimitRange or quota and the MeshConfig field, and no
// Secret. A LimitRange whose defaults satisfy it admits the pod, as the
// apiserver does.
func TestNamespaceLimitsRefuseBeforeTheSecret(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	env := startCoreEnv(t, fsmNamespace)
	c, err := cache.New(env.Config, cache.Options{Scheme: env.Client.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	limits := injector.NewCachedLimits(c)
	go func() { _ = c.Start(ctx) }()
	go func() { _ = limits.Start(ctx) }()
	h, err := injector.NewHandler(injector.Options{
		Client: env.Client, Namespaces: env.Client, Limits: limits, Issuer: newTresor(ctx, t, env.Clientset, 4),
		MeshName: meshName, FSMNamespace: fsmNamespace,
	})
	if err != nil {
		t.Fatal(err)
	}
	const webhookName = "injector-limits-test"
	registerInjector(ctx, t, env.Client, h, webhookName)
	q := resource.MustParse

	namespace := func(t *testing.T, name string, objs ...client.Object) string {
		t.Helper()
		// Before the policies, which refuse the probe's pod too.
		injectedNamespace(ctx, t, env.Client, name)
		for _, o := range objs {
			o.SetNamespace(name)
			if err := env.Client.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
			if rq, ok := o.(*corev1.ResourceQuota); ok {
				// envtest runs no kube-controller-manager: the status the
				// quota plugin reads is written as its controller would.
				used := corev1.ResourceList{}
				for n := range rq.Spec.Hard {
					used[n] = q("0")
				}
				rq.Status = corev1.ResourceQuotaStatus{Hard: rq.Spec.Hard, Used: used}
				if err := env.Client.Status().Update(ctx, rq); err != nil {
					t.Fatal(err)
				}
			}
		}
		eventually(t, 30*time.Second, "the injector's informers to hold the namespace's LimitRanges and ResourceQuotas", func() (bool, error) {
			l, ok := limits.NamespaceLimits(ctx, name)
			if !ok || len(l.LimitRanges)+len(l.Quotas) != len(objs) {
				return false, nil
			}
			for _, rq := range l.Quotas {
				if len(rq.Status.Hard) == 0 {
					return false, nil
				}
			}
			return true, nil
		})
		return name
	}
	// The app's own container satisfies the policies: only the injected
	// ones break them.
	appPod := func(ns string) *corev1.Pod {
		p := pod("web", ns)
		p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("64Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("100m"), corev1.ResourceMemory: q("64Mi")},
		}
		return p
	}
	refused := func(t *testing.T, ns string, want ...string) {
		t.Helper()
		denied := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultDenied)
		err := env.Client.Create(ctx, appPod(ns))
		t.Logf("create: %v", err)
		var status apierrors.APIStatus
		if !errors.As(err, &status) {
			t.Fatalf("create: %v, want the apiserver's refusal", err)
		}
		for _, w := range want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("refusal does not say %q", w)
			}
		}
		if code := status.Status().Code; code != http.StatusBadRequest {
			t.Errorf("refused with status %d, want %d (the injector's denial)", code, http.StatusBadRequest)
		}
		if d := reviewhttptest.Requests(t, webhookName, reviewhttp.ResultDenied) - denied; d != 1 {
			t.Errorf("the injector denied %v pods, want 1", d)
		}
		if s := bootstrapSecrets(t, ctx, env.Client, ns); len(s) != 0 {
			t.Errorf("%d bootstrap Secrets written for a refused pod", len(s))
		}
	}

	t.Run("a LimitRange's ratio the injected containers break", func(t *testing.T) {
		ns := namespace(t, "limits-ratio", &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "ratio"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: q("2")}}}}})
		refused(t, ns,
			`LimitRange "ratio" (spec.limits[0]) refuses the injected container "sidecar": memory max limit to request ratio per Container is 2, but no request is specified or request is 0`,
			"set memory in MeshConfig spec.sidecar.resources (limits and requests), or annotations flomesh.io/sidecar-resource-limits-memory and flomesh.io/sidecar-resource-requests-memory",
			`refuses the injected container "fsm-init"`, "MeshConfig spec.sidecar.initResources")
	})
	t.Run("a compute quota the injected containers specify nothing for", func(t *testing.T) {
		ns := namespace(t, "limits-quota", &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"requests.cpu": q("10"), "limits.memory": q("10Gi")}}})
		refused(t, ns,
			`ResourceQuota "tenant" (hard requests.cpu) makes every container specify requests.cpu, and the injected container "sidecar" has none`,
			`ResourceQuota "tenant" (hard limits.memory) makes every container specify limits.memory, and the injected container "fsm-init" has none`)
	})
	t.Run("a LimitRange whose defaults satisfy it: admitted", func(t *testing.T) {
		ns := namespace(t, "limits-defaults", &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "ratio"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: q("2")},
				Default:              corev1.ResourceList{corev1.ResourceMemory: q("256Mi")},
				DefaultRequest:       corev1.ResourceList{corev1.ResourceMemory: q("128Mi")}}}}},
			&corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
				Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"limits.memory": q("10Gi")}}})
		p := appPod(ns)
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if p.Labels[injector.ProxyUUIDLabel] == "" {
			t.Fatal("not injected")
		}
		if s := bootstrapSecrets(t, ctx, env.Client, ns); len(s) != 1 {
			t.Errorf("%d bootstrap Secrets, want 1", len(s))
		}
	})
	// A pod with pod-level resources satisfies a compute quota without any
	// container specifying them (the apiserver admits such a pod, its own
	// containers specifying nothing): its injected containers are not held
	// to the rule either.
	t.Run("pod-level resources under a compute quota: admitted", func(t *testing.T) {
		ns := namespace(t, "limits-podlevel", &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tenant"},
			Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"requests.cpu": q("10"), "limits.memory": q("10Gi")}}})
		p := pod("web", ns)
		p.Spec.Resources = &corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")},
			Limits:   corev1.ResourceList{corev1.ResourceCPU: q("1"), corev1.ResourceMemory: q("1Gi")},
		}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		if p.Labels[injector.ProxyUUIDLabel] == "" {
			t.Fatal("not injected")
		}
	})
	// The order of the apiserver's defaults that checkNamespaceLimits
	// follows: the sidecar's request defaults to its limit (256Mi, from the
	// annotation) before the LimitRange's defaultRequest (512Mi) could
	// fill it, which would put it above the limit.
	t.Run("a request defaults to its limit before the LimitRange's defaults", func(t *testing.T) {
		ns := namespace(t, "limits-order", &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "ratio"},
			Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
				MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: q("2")},
				Default:              corev1.ResourceList{corev1.ResourceMemory: q("512Mi")}}}}})
		p := appPod(ns)
		p.Annotations = map[string]string{injector.SidecarResourceLimitsPrefix + "memory": "256Mi"}
		if err := env.Client.Create(ctx, p); err != nil {
			t.Fatalf("create: %v", err)
		}
		for _, c := range p.Spec.Containers {
			if c.Name == injector.SidecarContainerName && c.Resources.Requests.Memory().String() != "256Mi" {
				t.Errorf("sidecar resources %v, want its request defaulted from its limit", c.Resources)
			}
		}
	})
}
