package injector

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// NamespaceLimits are the LimitRanges and ResourceQuotas of a pod's
// namespace, the manager's cache's own objects (shared: never modified).
type NamespaceLimits struct {
	LimitRanges []*corev1.LimitRange
	Quotas      []*corev1.ResourceQuota
}

// LimitsSource yields a namespace's LimitRanges and ResourceQuotas. ok is
// false when they are not known (the informers not synced: not yet, or
// forbidden to list them); the pod is then injected unchecked, as before
// this check existed: it never holds up a pod.
type LimitsSource interface {
	NamespaceLimits(ctx context.Context, namespace string) (limits NamespaceLimits, ok bool)
}

// CachedLimits reads LimitRanges and ResourceQuotas from the manager's
// cache (cluster-wide informers, full objects; both are small and few)
// through the informers' namespace index: an admission makes no request to
// the apiserver and, for a namespace with neither (most), allocates
// nothing. A manager Runnable on every replica: it registers the informers
// when the manager runs it, after the manager's caches have synced, never
// before: the manager waits for every informer registered before it starts
// before it starts the bootstrap Secret controllers, and an informer RBAC
// forbids to list never syncs. Readiness does not wait for them either
// (webhooks.CachesSynced is not given them): until they have synced, or
// when they cannot, pods are injected unchecked.
type CachedLimits struct {
	cache cache.Informers
	// infs is set once both informers are registered.
	infs atomic.Pointer[[2]toolscache.SharedIndexInformer]
}

// NewCachedLimits reads through c once Start has run.
func NewCachedLimits(c cache.Informers) *CachedLimits { return &CachedLimits{cache: c} }

// Start registers the informers without waiting for them to sync, then
// waits for ctx.
func (l *CachedLimits) Start(ctx context.Context) error {
	var infs [2]toolscache.SharedIndexInformer
	for i, obj := range LimitsCaches() {
		inf, err := l.cache.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			return fmt.Errorf("injector: %T informer: %w", obj, err)
		}
		// controller-runtime's informers are client-go's, with the
		// namespace index.
		sii, ok := inf.(toolscache.SharedIndexInformer)
		if !ok {
			return fmt.Errorf("injector: %T informer is a %T, not a client-go SharedIndexInformer", obj, inf)
		}
		infs[i] = sii
	}
	l.infs.Store(&infs)
	<-ctx.Done()
	return nil
}

// NeedLeaderElection: every replica admits pods.
func (*CachedLimits) NeedLeaderElection() bool { return false }

// NamespaceLimits implements LimitsSource; not known until Start has
// registered both informers and they have synced.
func (l *CachedLimits) NamespaceLimits(_ context.Context, namespace string) (NamespaceLimits, bool) {
	infs := l.infs.Load()
	if infs == nil || !infs[0].HasSynced() || !infs[1].HasSynced() {
		return NamespaceLimits{}, false
	}
	var out NamespaceLimits
	lrs, err1 := infs[0].GetIndexer().ByIndex(toolscache.NamespaceIndex, namespace)
	rqs, err2 := infs[1].GetIndexer().ByIndex(toolscache.NamespaceIndex, namespace)
	if err1 != nil || err2 != nil {
		return NamespaceLimits{}, false // no namespace index: not known
	}
	for _, o := range lrs {
		if lr, ok := o.(*corev1.LimitRange); ok {
			out.LimitRanges = append(out.LimitRanges, lr)
		}
	}
	for _, o := range rqs {
		if rq, ok := o.(*corev1.ResourceQuota); ok {
			out.Quotas = append(out.Quotas, rq)
		}
	}
	return out, true
}

// LimitsCaches are the kinds CachedLimits reads; they are not among
// HandlerCaches: readiness must not wait for kinds the servers may not be
// allowed to list.
func LimitsCaches() []client.Object {
	return []client.Object{&corev1.LimitRange{}, &corev1.ResourceQuota{}}
}

// checkNamespaceLimits refuses an injected pod (pod, after injection) whose
// containers the injector added (added, by name) the namespace's
// LimitRanges (type Container: min, max, maxLimitRequestRatio) or
// ResourceQuotas (tracking requests.*, limits.*, cpu or memory: every
// container must then specify them) would refuse. The LimitRanger and
// ResourceQuota admission plugins run after the mutating webhooks, so the
// create failed after the pod's Secret was written and its certificate
// issued, again at each retry of its owner, with a message naming no
// container ("memory max limit to request ratio per Container is 2, but no
// request is specified") or one the user never wrote: this names the
// container, the LimitRange or ResourceQuota and the MeshConfig field or
// annotation to change. The apiserver's defaults are applied first, as it
// applies them to the injected pod: a request defaults to its limit (pod
// defaulting of the patched object), then each LimitRange's
// default/defaultRequest fill what is missing (LimitRanger is run again
// after a webhook changed the pod). Only the added containers are judged:
// the user's own are the apiserver's to report. Quotas whose scopes this
// cannot evaluate (scopeSelector, BestEffort, NotBestEffort, ...) are left
// to the apiserver, as is a quota's exhaustion (usage, not a rule).
func checkNamespaceLimits(limits NamespaceLimits, nsName string, pod *corev1.Pod, added []string) error {
	if len(limits.LimitRanges) == 0 && len(limits.Quotas) == 0 {
		return nil
	}
	// Pod-level resources (spec.resources) change both rules: the quota
	// admits a pod whose containers specify nothing when the pod does
	// (checked through the apiserver), and LimitRanger's treatment of its
	// containers follows the pod's. Left to the apiserver rather than
	// refusing a pod it admits (checkPodLevelResources holds the injected
	// containers to the pod's own totals).
	if pod.Spec.Resources != nil {
		return nil
	}
	var problems []string
	for _, name := range added {
		c := findContainer(pod, name)
		if c == nil {
			continue
		}
		req, lim := effectiveResources(c.Resources, limits.LimitRanges)
		for _, lr := range limits.LimitRanges {
			for j := range lr.Spec.Limits {
				item := &lr.Spec.Limits[j]
				if item.Type != corev1.LimitTypeContainer {
					continue
				}
				for _, v := range containerConstraintViolations(item, req, lim) {
					problems = append(problems, fmt.Sprintf("LimitRange %q (spec.limits[%d]) refuses the injected container %q: %s (its %s after the namespace's defaults: %s); %s",
						lr.Name, j, name, v.text, v.resource, describeResource(v.resource, req, lim), resourceFieldFor(name, v.resource)))
				}
			}
		}
		for _, q := range limits.Quotas {
			if !quotaMatches(q, pod) {
				continue
			}
			for _, r := range quotaMissing(q, req, lim) {
				problems = append(problems, fmt.Sprintf("ResourceQuota %q (hard %s) makes every container specify %s, and the injected container %q has none after the namespace's defaults; %s",
					q.Name, r, r, name, resourceFieldFor(name, quotaBase(r))))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("namespace %s's resource policies refuse the containers the injector adds: %s; or opt the pod out with annotation %s: disabled",
		nsName, strings.Join(problems, "; "), SidecarInjectionAnnotation)
}

// findContainer is the container or init container named name.
func findContainer(pod *corev1.Pod, name string) *corev1.Container {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		if i := slices.IndexFunc(list, func(c corev1.Container) bool { return c.Name == name }); i >= 0 {
			return &list[i]
		}
	}
	return nil
}

// effectiveResources are a container's requests and limits as the
// apiserver admits them: a request defaults to its limit, then every
// LimitRange in turn (as LimitRanger merges them) fills the limits and
// requests still missing from its Container items' default and
// defaultRequest, with the LimitRange's own API defaults (default from max,
// defaultRequest from default, then from min) that a stored one already
// carries. New maps: the container and the cache's objects stay as they are.
func effectiveResources(r corev1.ResourceRequirements, lrs []*corev1.LimitRange) (req, lim corev1.ResourceList) {
	req, lim = corev1.ResourceList{}, corev1.ResourceList{}
	for k, v := range r.Limits {
		lim[k] = v
		req[k] = v
	}
	for k, v := range r.Requests {
		req[k] = v
	}
	for _, lr := range lrs {
		defLim, defReq := corev1.ResourceList{}, corev1.ResourceList{}
		for j := range lr.Spec.Limits {
			item := &lr.Spec.Limits[j]
			if item.Type != corev1.LimitTypeContainer {
				continue
			}
			d, dr := itemDefaults(item)
			for k, v := range dr {
				defReq[k] = v
			}
			for k, v := range d {
				defLim[k] = v
			}
		}
		for k, v := range defLim {
			if _, ok := lim[k]; !ok {
				lim[k] = v
			}
		}
		for k, v := range defReq {
			if _, ok := req[k]; !ok {
				req[k] = v
			}
		}
	}
	return req, lim
}

// itemDefaults are a Container item's default and defaultRequest after the
// API's LimitRange defaulting (SetDefaults_LimitRangeItem): default from
// max, defaultRequest from default, then from min.
func itemDefaults(item *corev1.LimitRangeItem) (def, defReq corev1.ResourceList) {
	def, defReq = corev1.ResourceList{}, corev1.ResourceList{}
	for k, v := range item.Default {
		def[k] = v
	}
	for k, v := range item.DefaultRequest {
		defReq[k] = v
	}
	for k, v := range item.Max {
		if _, ok := def[k]; !ok {
			def[k] = v
		}
	}
	for _, from := range []corev1.ResourceList{def, item.Min} {
		for k, v := range from {
			if _, ok := defReq[k]; !ok {
				defReq[k] = v
			}
		}
	}
	return def, defReq
}

type violation struct {
	resource corev1.ResourceName
	text     string
}

// containerConstraintViolations are LimitRanger's refusals of one
// container by one Container item, in the plugin's words (min, then max,
// then maxLimitRequestRatio), sorted by resource. Values are compared as
// LimitRanger compares them (limitRangerValues), not exactly: a request
// of 100.5m against a min of 101m passes there, and must here.
func containerConstraintViolations(item *corev1.LimitRangeItem, req, lim corev1.ResourceList) []violation {
	var out []violation
	for _, k := range sortedNames(item.Min) {
		min := item.Min[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		rv, lv, ev := limitRangerValues(r, l, min)
		switch {
		case !hasReq:
			out = append(out, violation{k, fmt.Sprintf("minimum %s usage per Container is %s, but no request is specified", k, min.String())})
		case rv < ev:
			out = append(out, violation{k, fmt.Sprintf("minimum %s usage per Container is %s, but request is %s", k, min.String(), r.String())})
		case hasLim && lv < ev:
			out = append(out, violation{k, fmt.Sprintf("minimum %s usage per Container is %s, but limit is %s", k, min.String(), l.String())})
		}
	}
	for _, k := range sortedNames(item.Max) {
		max := item.Max[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		rv, lv, ev := limitRangerValues(r, l, max)
		switch {
		case !hasLim:
			out = append(out, violation{k, fmt.Sprintf("maximum %s usage per Container is %s, but no limit is specified", k, max.String())})
		case lv > ev:
			out = append(out, violation{k, fmt.Sprintf("maximum %s usage per Container is %s, but limit is %s", k, max.String(), l.String())})
		case hasReq && rv > ev:
			out = append(out, violation{k, fmt.Sprintf("maximum %s usage per Container is %s, but request is %s", k, max.String(), r.String())})
		}
	}
	for _, k := range sortedNames(item.MaxLimitRequestRatio) {
		ratio := item.MaxLimitRequestRatio[k]
		r, hasReq := req[k]
		l, hasLim := lim[k]
		rv, lv, _ := limitRangerValues(r, l, ratio)
		switch {
		case !hasReq || rv == 0:
			out = append(out, violation{k, fmt.Sprintf("%s max limit to request ratio per Container is %s, but no request is specified or request is 0", k, ratio.String())})
		case !hasLim || lv == 0:
			out = append(out, violation{k, fmt.Sprintf("%s max limit to request ratio per Container is %s, but no limit is specified or limit is 0", k, ratio.String())})
		default:
			if observed, over := ratioExceeds(lv, rv, ratio); over {
				out = append(out, violation{k, fmt.Sprintf("%s max limit to request ratio per Container is %s, but provided ratio is %f", k, ratio.String(), observed)})
			}
		}
	}
	return out
}

// limitRangerValues are a request, a limit and the enforced value as
// LimitRanger compares them (its requestLimitEnforcedValues): in
// milli-units when none of the three overflows them, else in whole units
// rounded up. An absent request or limit is 0.
func limitRangerValues(request, limit, enforced resource.Quantity) (req, lim, enf int64) {
	req, lim, enf = request.Value(), limit.Value(), enforced.Value()
	if req <= resource.MaxMilliValue && lim <= resource.MaxMilliValue && enf <= resource.MaxMilliValue {
		req, lim, enf = request.MilliValue(), limit.MilliValue(), enforced.MilliValue()
	}
	return req, lim, enf
}

// ratioExceeds: limit/request (as limitRangerValues gives them, request
// not 0) > ratio, computed as LimitRanger computes it; observed is the
// ratio.
func ratioExceeds(lim, req int64, ratio resource.Quantity) (observed float64, exceeds bool) {
	observed = float64(lim) / float64(req)
	got, bound := observed, float64(ratio.Value())
	if ratio.Value() <= resource.MaxMilliValue {
		got, bound = observed*1000, float64(ratio.MilliValue())
	}
	return observed, got > bound
}

// quotaMatches: the quota applies to the pod by its scopes. Only Terminating
// and NotTerminating are evaluated; any other scope, or a scopeSelector, is
// treated as not matching: left to the apiserver rather than refusing a pod
// it would admit.
func quotaMatches(q *corev1.ResourceQuota, pod *corev1.Pod) bool {
	if q.Spec.ScopeSelector != nil && len(q.Spec.ScopeSelector.MatchExpressions) > 0 {
		return false
	}
	terminating := pod.Spec.ActiveDeadlineSeconds != nil && *pod.Spec.ActiveDeadlineSeconds >= 0
	for _, s := range q.Spec.Scopes {
		switch s {
		case corev1.ResourceQuotaScopeTerminating:
			if !terminating {
				return false
			}
		case corev1.ResourceQuotaScopeNotTerminating:
			if terminating {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// quotaComputeNames are the quota resources that make every container of
// a pod specify them (the quota's pod evaluator's "must specify" rule).
var quotaComputeNames = []corev1.ResourceName{
	corev1.ResourceCPU, corev1.ResourceLimitsCPU, corev1.ResourceRequestsCPU,
	corev1.ResourceLimitsMemory, corev1.ResourceMemory, corev1.ResourceRequestsMemory,
}

// quotaMissing are the quota's compute resources, among those of its
// status.hard (what the quota plugin enforces), that a container with
// these requests and limits does not specify, sorted.
func quotaMissing(q *corev1.ResourceQuota, req, lim corev1.ResourceList) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, n := range quotaComputeNames {
		if _, ok := q.Status.Hard[n]; !ok {
			continue
		}
		var has bool
		switch n {
		case corev1.ResourceCPU, corev1.ResourceRequestsCPU:
			_, has = req[corev1.ResourceCPU]
		case corev1.ResourceMemory, corev1.ResourceRequestsMemory:
			_, has = req[corev1.ResourceMemory]
		case corev1.ResourceLimitsCPU:
			_, has = lim[corev1.ResourceCPU]
		case corev1.ResourceLimitsMemory:
			_, has = lim[corev1.ResourceMemory]
		}
		if !has {
			out = append(out, n)
		}
	}
	return out
}

// quotaBase is the container resource a quota resource counts: cpu of
// requests.cpu and limits.cpu.
func quotaBase(n corev1.ResourceName) corev1.ResourceName {
	if _, after, ok := strings.Cut(string(n), "."); ok {
		return corev1.ResourceName(after)
	}
	return n
}

// describeResource is a container's request and limit of one resource.
func describeResource(n corev1.ResourceName, req, lim corev1.ResourceList) string {
	show := func(l corev1.ResourceList) string {
		if q, ok := l[n]; ok {
			return q.String()
		}
		return "none"
	}
	return "request " + show(req) + ", limit " + show(lim)
}

// resourceFieldFor says where an injected container's resource is set.
func resourceFieldFor(container string, n corev1.ResourceName) string {
	switch container {
	case SidecarContainerName:
		s := fmt.Sprintf("set %s in MeshConfig spec.sidecar.resources (limits and requests)", n)
		if slices.Contains(sidecarResourceNames, string(n)) {
			s += fmt.Sprintf(", or annotations %s%s and %s%s on the pod or its namespace", SidecarResourceLimitsPrefix, n, SidecarResourceRequestsPrefix, n)
		}
		return s
	case InitContainerName:
		return fmt.Sprintf("set %s in MeshConfig spec.sidecar.initResources (limits and requests)", n)
	case HealthcheckContainerName:
		return fmt.Sprintf("set %s in MeshConfig spec.sidecar.healthcheckResources (limits and requests)", n)
	}
	return ""
}

// sortedNames are a list's resource names in order, for a stable message.
func sortedNames(l corev1.ResourceList) []corev1.ResourceName {
	if len(l) == 0 {
		return nil
	}
	out := make([]corev1.ResourceName, 0, len(l))
	for k := range l {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
