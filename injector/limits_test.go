package injector

import (
	"context"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// TestMutateNamespaceLimits: the containers the injector adds are held to
// the namespace's LimitRanges (type Container) and compute ResourceQuotas
// as the apiserver will hold them after this webhook, once its defaults
// (request from limit; the LimitRanges' default and defaultRequest) are
// applied: a pod they would refuse is refused here, before its Secret is
// written, naming the container, the LimitRange or quota, its constraint
// and the MeshConfig field or annotation to change. The user's own
// containers are the apiserver's to judge.
func TestMutateNamespaceLimits(t *testing.T) {
	q := resource.MustParse
	rl := func(kv ...string) corev1.ResourceList {
		l := corev1.ResourceList{}
		for i := 0; i < len(kv); i += 2 {
			l[corev1.ResourceName(kv[i])] = q(kv[i+1])
		}
		return l
	}
	lr := func(items ...corev1.LimitRangeItem) *corev1.LimitRange {
		return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lr", Namespace: "app"}, Spec: corev1.LimitRangeSpec{Limits: items}}
	}
	quota := func(hard corev1.ResourceList, scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
		return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "tenant", Namespace: "app"},
			Spec: corev1.ResourceQuotaSpec{Hard: hard, Scopes: scopes}, Status: corev1.ResourceQuotaStatus{Hard: hard}}
	}
	ratio := corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: rl("memory", "2")}
	const optOut = "; or opt the pod out with annotation flomesh.io/sidecar-injection: disabled"
	sidecarMemory := "set memory in MeshConfig spec.sidecar.resources (limits and requests), or annotations flomesh.io/sidecar-resource-limits-memory and flomesh.io/sidecar-resource-requests-memory on the pod or its namespace"
	for _, tc := range []struct {
		name     string
		limits   NamespaceLimits
		set      func(*Settings)
		podAnn   map[string]string
		edit     func(*corev1.Pod)
		reinject bool
		want     string   // the whole message; "" and no contains: injected
		contains []string // parts of the message
	}{
		{name: "none"},
		// rv33's case: the apiserver said "memory max limit to request
		// ratio per Container is 2, but no request is specified or request
		// is 0", naming no container; the app's own breaks it too (its
		// own to fix, and the apiserver's to say).
		{name: "ratio without requests", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}},
			want: `namespace app's resource policies refuse the containers the injector adds: ` +
				`LimitRange "lr" (spec.limits[0]) refuses the injected container "sidecar": memory max limit to request ratio per Container is 2, but no request is specified or request is 0 ` +
				`(its memory after the namespace's defaults: request none, limit none); ` + sidecarMemory + `; ` +
				`LimitRange "lr" (spec.limits[0]) refuses the injected container "fsm-init": memory max limit to request ratio per Container is 2, but no request is specified or request is 0 ` +
				`(its memory after the namespace's defaults: request none, limit none); set memory in MeshConfig spec.sidecar.initResources (limits and requests)` + optOut},
		{name: "ratio met: requests default to limits", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Limits: rl("memory", "256Mi")}
				s.InitResources = corev1.ResourceRequirements{Limits: rl("memory", "64Mi")}
			}},
		{name: "ratio met by the LimitRange's own defaults",
			limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer,
				MaxLimitRequestRatio: rl("memory", "2"), Default: rl("memory", "256Mi"), DefaultRequest: rl("memory", "128Mi")})}}},
		{name: "ratio exceeded", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Limits: rl("memory", "1Gi"), Requests: rl("memory", "256Mi")}
				s.InitResources = corev1.ResourceRequirements{Limits: rl("memory", "64Mi")}
			},
			contains: []string{`refuses the injected container "sidecar": memory max limit to request ratio per Container is 2, but provided ratio is 4.000000 (its memory after the namespace's defaults: request 256Mi, limit 1Gi); ` + sidecarMemory + optOut}},
		// A max without a default is the default limit (API defaulting of
		// the LimitRange): no limit set is no refusal; one above it is.
		{name: "max: the default limit", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: rl("memory", "1Gi")})}}},
		{name: "max exceeded by an annotation", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: rl("memory", "1Gi")})}},
			podAnn: map[string]string{SidecarResourceLimitsPrefix + "memory": "2Gi"},
			contains: []string{`LimitRange "lr" (spec.limits[0]) refuses the injected container "sidecar": maximum memory usage per Container is 1Gi, but limit is 2Gi (its memory after the namespace's defaults: request 2Gi, limit 2Gi); ` +
				sidecarMemory + optOut}},
		{name: "min above the request", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Min: rl("cpu", "100m")})}},
			set: func(s *Settings) { s.HealthcheckResources = corev1.ResourceRequirements{Requests: rl("cpu", "10m")} },
			edit: func(p *corev1.Pod) {
				p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}}}
			},
			want: `namespace app's resource policies refuse the containers the injector adds: LimitRange "lr" (spec.limits[0]) refuses the injected container "fsm-healthcheck": ` +
				`minimum cpu usage per Container is 100m, but request is 10m (its cpu after the namespace's defaults: request 10m, limit none); ` +
				`set cpu in MeshConfig spec.sidecar.healthcheckResources (limits and requests)` + optOut},
		{name: "a Pod item is not checked", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypePod, MaxLimitRequestRatio: rl("memory", "2")})}}},
		// rv33's other case: "failed quota: q: must specify limits.memory
		// for: fsm-init,sidecar; requests.cpu for: fsm-init,sidecar".
		{name: "quota: must specify", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("requests.cpu", "10", "limits.memory", "10Gi", "pods", "10"))}},
			want: `namespace app's resource policies refuse the containers the injector adds: ` +
				`ResourceQuota "tenant" (hard requests.cpu) makes every container specify requests.cpu, and the injected container "sidecar" has none after the namespace's defaults; ` +
				`set cpu in MeshConfig spec.sidecar.resources (limits and requests), or annotations flomesh.io/sidecar-resource-limits-cpu and flomesh.io/sidecar-resource-requests-cpu on the pod or its namespace; ` +
				`ResourceQuota "tenant" (hard limits.memory) makes every container specify limits.memory, and the injected container "sidecar" has none after the namespace's defaults; ` + sidecarMemory + `; ` +
				`ResourceQuota "tenant" (hard requests.cpu) makes every container specify requests.cpu, and the injected container "fsm-init" has none after the namespace's defaults; ` +
				`set cpu in MeshConfig spec.sidecar.initResources (limits and requests); ` +
				`ResourceQuota "tenant" (hard limits.memory) makes every container specify limits.memory, and the injected container "fsm-init" has none after the namespace's defaults; ` +
				`set memory in MeshConfig spec.sidecar.initResources (limits and requests)` + optOut},
		{name: "quota: cpu is requests.cpu", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("cpu", "10"))}},
			set:      func(s *Settings) { s.Resources = corev1.ResourceRequirements{Requests: rl("cpu", "100m")} },
			contains: []string{`ResourceQuota "tenant" (hard cpu) makes every container specify cpu, and the injected container "fsm-init" has none`}},
		{name: "quota met by a LimitRange's defaults",
			limits: NamespaceLimits{
				LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Default: rl("cpu", "500m", "memory", "256Mi")})},
				Quotas:      []*corev1.ResourceQuota{quota(rl("requests.cpu", "10", "limits.memory", "10Gi"))}}},
		{name: "quota met by the settings", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("requests.cpu", "10", "limits.memory", "10Gi"))}},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Limits: rl("cpu", "1", "memory", "256Mi")}
				s.InitResources = corev1.ResourceRequirements{Limits: rl("cpu", "100m", "memory", "64Mi")}
			}},
		{name: "quota of counts only", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("pods", "10", "count/secrets", "10"))}}},
		{name: "quota scoped to Terminating pods, the pod is not", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("requests.cpu", "10"), corev1.ResourceQuotaScopeTerminating)}}},
		{name: "quota scoped to Terminating pods, the pod is", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("requests.cpu", "10"), corev1.ResourceQuotaScopeTerminating)}},
			edit:     func(p *corev1.Pod) { p.Spec.ActiveDeadlineSeconds = ptr.To(int64(60)) },
			contains: []string{`ResourceQuota "tenant" (hard requests.cpu) makes every container specify requests.cpu, and the injected container "sidecar"`}},
		// Left to the apiserver rather than refusing a pod it may admit.
		{name: "quota with a scope not evaluated", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{quota(rl("requests.cpu", "10"), corev1.ResourceQuotaScopeNotBestEffort)}}},
		// Status.hard is what the quota plugin enforces; a quota its
		// controller has not seen yet enforces nothing of this.
		{name: "quota without status", limits: NamespaceLimits{Quotas: []*corev1.ResourceQuota{{ObjectMeta: metav1.ObjectMeta{Name: "new"},
			Spec: corev1.ResourceQuotaSpec{Hard: rl("requests.cpu", "1")}}}}},
		// A request of 0 is no request to LimitRanger's ratio check: its
		// words, not a ratio of +Inf.
		{name: "ratio with a request of 0", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}},
			set: func(s *Settings) {
				s.Resources = corev1.ResourceRequirements{Limits: rl("memory", "256Mi"), Requests: rl("memory", "0")}
				s.InitResources = corev1.ResourceRequirements{Limits: rl("memory", "64Mi")}
			},
			contains: []string{`refuses the injected container "sidecar": memory max limit to request ratio per Container is 2, but no request is specified or request is 0 (its memory after the namespace's defaults: request 0, limit 256Mi)`}},
		// A max is the default limit only where no default is given: the
		// default's 200m against a request of 100m meets the ratio of 4
		// (the max's 1 would not).
		{name: "a default limit beats the max",
			limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer,
				Max: rl("cpu", "1"), Default: rl("cpu", "200m"), DefaultRequest: rl("cpu", "100m"), MaxLimitRequestRatio: rl("cpu", "4")})}}},
		// A pod with pod-level resources is left to the apiserver's
		// LimitRanger, which judges its containers by the pod's
		// (checkPodLevelResources holds the injected ones to its totals).
		{name: "pod-level resources: LimitRanges not applied", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}},
			edit: func(p *corev1.Pod) {
				p.Spec.Resources = &corev1.ResourceRequirements{Limits: rl("memory", "4Gi")}
			}},
		{name: "a stored pod's Secret rebuilt", limits: NamespaceLimits{LimitRanges: []*corev1.LimitRange{lr(ratio)}}, reinject: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := simplePod(tc.podAnn)
			if tc.edit != nil {
				tc.edit(pod)
			}
			s := DefaultSettings()
			if tc.set != nil {
				tc.set(&s)
			}
			if tc.reinject {
				src, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: testMesh, ProxyUUID: "u-0"})
				if err != nil {
					t.Fatal(err)
				}
				pod = src.Pod
			}
			m, err := Mutate(MutateInput{Pod: pod, Namespace: monitoredNamespace("app", nil), Settings: s, Mesh: testMesh, ProxyUUID: "u-1",
				Reinject: tc.reinject, Limits: tc.limits})
			injected := tc.want == "" && len(tc.contains) == 0
			switch {
			case injected && err != nil:
				t.Fatalf("refused: %v", err)
			case injected && m.Pod.Labels[ProxyUUIDLabel] != "u-1":
				t.Fatal("not injected")
			case !injected && err == nil:
				t.Fatal("injected, want refused")
			case tc.want != "" && err.Error() != tc.want:
				t.Fatalf("err = %v\nwant  %s", err, tc.want)
			}
			for _, part := range tc.contains {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("err = %v\nwant it to contain %s", err, part)
				}
			}
		})
	}
}

// TestCheckNamespaceLimitsAllocations: a namespace without LimitRanges
// and ResourceQuotas (most) costs the check nothing.
func TestCheckNamespaceLimitsAllocations(t *testing.T) {
	pod := simplePod(nil)
	added := []string{SidecarContainerName, InitContainerName}
	if n := testing.AllocsPerRun(100, func() {
		if err := checkNamespaceLimits(NamespaceLimits{}, "app", pod, added); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("%v allocations, want 0", n)
	}
}

// fakeLimits is a LimitsSource: limits, known or not.
type fakeLimits struct {
	limits NamespaceLimits
	known  bool
}

func (f fakeLimits) NamespaceLimits(context.Context, string) (NamespaceLimits, bool) {
	return f.limits, f.known
}

// TestHandlerNamespaceLimits: a pod the namespace's LimitRange would refuse
// for an injected container is denied (400, an Event on its owner) before
// any Secret is written; while the LimitRanges and ResourceQuotas are not
// known (informers not synced, or not allowed to list them) it is
// injected as before: the check never holds up a pod.
func TestHandlerNamespaceLimits(t *testing.T) {
	ratio := NamespaceLimits{LimitRanges: []*corev1.LimitRange{{ObjectMeta: metav1.ObjectMeta{Name: "lr"},
		Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer,
			MaxLimitRequestRatio: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("2")}}}}}}}
	for _, tc := range []struct {
		name    string
		source  LimitsSource
		allowed bool
	}{
		{"known", fakeLimits{ratio, true}, false},
		{"not known", fakeLimits{ratio, false}, true},
		{"no source", nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newHandlerFixture(t, stubIssuer{}, nil)
			f.h.opts.Limits = tc.source
			_, resp := f.post(t, reviewBody(t, nil), "application/json")
			if tc.allowed {
				if !resp.Allowed || len(resp.Patch) == 0 || len(f.secrets) != 1 {
					t.Fatalf("allowed=%v patch %d bytes, %d Secrets; want injected", resp.Allowed, len(resp.Patch), len(f.secrets))
				}
				return
			}
			if resp.Allowed || resp.Result.Code != http.StatusBadRequest || len(f.secrets) != 0 || len(f.recorder.events) != 1 ||
				!strings.Contains(resp.Result.Message, `LimitRange "lr" (spec.limits[0]) refuses the injected container "sidecar"`) {
				t.Fatalf("allowed=%v code %d, %d Secrets, %d events, message %q; want a denial naming the LimitRange and the container, no Secret",
					resp.Allowed, resp.Result.Code, len(f.secrets), len(f.recorder.events), resp.Result.Message)
			}
		})
	}
}

// TestCachedLimits: not known until both informers are registered and
// have synced (a pod is
// then injected unchecked); then a namespace's objects come from the
// informers' namespace index, and a namespace with none (most) costs the
// admission no allocation.
func TestCachedLimits(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	informer := func(obj runtime.Object, items ...runtime.Object) toolscache.SharedIndexInformer {
		lw := &toolscache.ListWatch{
			ListWithContextFunc: func(context.Context, metav1.ListOptions) (runtime.Object, error) {
				switch obj.(type) {
				case *corev1.LimitRange:
					l := &corev1.LimitRangeList{}
					for _, i := range items {
						l.Items = append(l.Items, *i.(*corev1.LimitRange))
					}
					return l, nil
				default:
					return &corev1.ResourceQuotaList{}, nil
				}
			},
			WatchFuncWithContext: func(context.Context, metav1.ListOptions) (watch.Interface, error) { return watch.NewFake(), nil },
		}
		return toolscache.NewSharedIndexInformer(listOnly{lw}, obj, 0, toolscache.Indexers{toolscache.NamespaceIndex: toolscache.MetaNamespaceIndexFunc})
	}
	lrs := informer(&corev1.LimitRange{}, &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "lr", Namespace: "policed"}})
	rqs := informer(&corev1.ResourceQuota{})
	l := &CachedLimits{}
	if _, ok := l.NamespaceLimits(ctx, "policed"); ok {
		t.Fatal("known before the informers were registered")
	}
	l.infs.Store(&[2]toolscache.SharedIndexInformer{lrs, rqs})
	if _, ok := l.NamespaceLimits(ctx, "policed"); ok {
		t.Fatal("known before the informers synced")
	}
	go lrs.Run(ctx.Done())
	go rqs.Run(ctx.Done())
	if !toolscache.WaitForCacheSync(ctx.Done(), lrs.HasSynced, rqs.HasSynced) {
		t.Fatal("not synced")
	}
	got, ok := l.NamespaceLimits(ctx, "policed")
	if !ok || len(got.LimitRanges) != 1 || got.LimitRanges[0].Name != "lr" || len(got.Quotas) != 0 {
		t.Fatalf("policed: %+v, %v; want LimitRange lr", got, ok)
	}
	if n := testing.AllocsPerRun(100, func() {
		if got, ok := l.NamespaceLimits(ctx, "app"); !ok || len(got.LimitRanges)+len(got.Quotas) != 0 {
			t.Fatalf("app: %+v, %v; want known, none", got, ok)
		}
	}); n != 0 {
		t.Errorf("a namespace without LimitRanges and ResourceQuotas: %v allocations, want 0", n)
	}
}

// listOnly is a ListWatch that client-go's reflector lists and watches
// rather than asking it for a watch-list stream, which it cannot give.
type listOnly struct{ *toolscache.ListWatch }

func (listOnly) IsWatchListSemanticsUnSupported() bool { return true }

// TestLimitRangerComparesAsTheApiserver: values are compared in LimitRanger's
// milli-units (rounded up), not exactly, or a request the apiserver admits
// would be refused here.
func TestLimitRangerComparesAsTheApiserver(t *testing.T) {
	q := resource.MustParse
	for _, tc := range []struct {
		name     string
		item     corev1.LimitRangeItem
		req, lim string
		refused  bool
	}{
		{"min met after rounding up", corev1.LimitRangeItem{Min: corev1.ResourceList{"cpu": q("101m")}}, "100.5m", "200m", false},
		{"min missed", corev1.LimitRangeItem{Min: corev1.ResourceList{"cpu": q("101m")}}, "100m", "200m", true},
		{"max met exactly", corev1.LimitRangeItem{Max: corev1.ResourceList{"memory": q("128Mi")}}, "64Mi", "128Mi", false},
		{"max exceeded by a byte", corev1.LimitRangeItem{Max: corev1.ResourceList{"memory": q("128Mi")}}, "64Mi", "134217729", true},
		{"ratio met", corev1.LimitRangeItem{MaxLimitRequestRatio: corev1.ResourceList{"cpu": q("2")}}, "100m", "200m", false},
		{"ratio exceeded", corev1.LimitRangeItem{MaxLimitRequestRatio: corev1.ResourceList{"cpu": q("2")}}, "100m", "201m", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := corev1.ResourceName("cpu")
			for n := range tc.item.Min {
				res = n
			}
			for n := range tc.item.Max {
				res = n
			}
			req, lim := corev1.ResourceList{res: q(tc.req)}, corev1.ResourceList{res: q(tc.lim)}
			got := containerConstraintViolations(&tc.item, req, lim)
			if (len(got) > 0) != tc.refused {
				t.Errorf("request %s, limit %s: violations %v; want refused %v", tc.req, tc.lim, got, tc.refused)
			}
		})
	}
}
