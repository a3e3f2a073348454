package rules

import (
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resources checks the resources of a container the injector adds to every
// pod (sidecar.resources, initResources, healthcheckResources) against the
// rules the apiserver applies to a pod's containers, so that a MeshConfig
// cannot make every pod create fail after injection: known or extended
// resource names, no negative quantity, requests within limits, extended
// resources whole and not overcommitted, hugepages whole pages, not
// overcommitted and with cpu or memory, and no resource claims (they name a
// claim of one pod; the MeshConfig applies to all).
func Resources(p *field.Path, r corev1.ResourceRequirements) field.ErrorList {
	var errs field.ErrorList
	for i, c := range r.Claims {
		errs = append(errs, field.Forbidden(p.Child("claims").Index(i),
			fmt.Sprintf("claim %q: the injected container would need it in every pod's spec.resourceClaims, and pods without it would be refused", c.Name)))
	}
	limitsPath, requestsPath := p.Child("limits"), p.Child("requests")
	errs = append(errs, resourceList(limitsPath, r.Limits)...)
	errs = append(errs, resourceList(requestsPath, r.Requests)...)

	hugepages, cpuOrMemory := false, false
	for _, list := range []corev1.ResourceList{r.Limits, r.Requests} {
		for name := range list {
			hugepages = hugepages || isHugePages(name)
			cpuOrMemory = cpuOrMemory || name == corev1.ResourceCPU || name == corev1.ResourceMemory
		}
	}
	if hugepages && !cpuOrMemory {
		errs = append(errs, field.Forbidden(p, "hugepages require a cpu or memory request or limit"))
	}
	for _, name := range sortedNames(r.Requests) {
		req := r.Requests[name]
		lim, hasLimit := r.Limits[name]
		switch {
		case isExtended(name) && !hasLimit:
			errs = append(errs, field.Required(limitsPath.Key(string(name)),
				fmt.Sprintf("extended resource %s cannot be overcommitted: set a limit equal to the request (%s)", name, req.String())))
		case isExtended(name) && req.Cmp(lim) != 0:
			errs = append(errs, field.Invalid(requestsPath.Key(string(name)), req.String(),
				fmt.Sprintf("must equal the limit (%s): extended resources cannot be overcommitted", lim.String())))
		// Hugepages are not overcommittable either (the apiserver's
		// IsOvercommitAllowed); its wording is kept so users can search it.
		case isHugePages(name) && !hasLimit:
			errs = append(errs, field.Required(limitsPath.Key(string(name)),
				fmt.Sprintf("Limit must be set for non overcommitable resources: set a %s limit equal to the request (%s)", name, req.String())))
		case isHugePages(name) && req.Cmp(lim) != 0:
			errs = append(errs, field.Invalid(requestsPath.Key(string(name)), req.String(),
				fmt.Sprintf("must be equal to %s limit of %s: hugepages cannot be overcommitted", name, lim.String())))
		case hasLimit && req.Cmp(lim) > 0:
			errs = append(errs, field.Invalid(requestsPath.Key(string(name)), req.String(),
				fmt.Sprintf("must be less than or equal to the %s limit (%s)", name, lim.String())))
		}
	}
	return errs
}

func resourceList(p *field.Path, list corev1.ResourceList) field.ErrorList {
	var errs field.ErrorList
	for _, name := range sortedNames(list) {
		q := list[name]
		kp := p.Key(string(name))
		if e := resourceName(kp, name); len(e) > 0 {
			errs = append(errs, e...)
			continue
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(kp, q.String(), "must be greater than or equal to 0"))
		} else if isExtended(name) && q.MilliValue()%1000 != 0 {
			errs = append(errs, field.Invalid(kp, q.String(), "must be a whole number: extended resources cannot be fractional"))
		} else if size, ok := hugePageSize(name); ok && q.Value()%size != 0 {
			// Pages are allocated whole; zero is a multiple the apiserver accepts.
			errs = append(errs, field.Invalid(kp, q.String(),
				fmt.Sprintf("%s is not positive integer multiple of %s: hugepages are allocated in whole pages", q.String(), name)))
		}
	}
	return errs
}

// resourceName accepts what a pod's container may request: cpu, memory,
// ephemeral-storage, hugepages-<size>, or an extended resource named with a
// domain outside kubernetes.io (example.com/gpu).
func resourceName(p *field.Path, name corev1.ResourceName) field.ErrorList {
	const allowed = "must be cpu, memory, ephemeral-storage, hugepages-<size> or an extended resource such as example.com/device"
	s := string(name)
	switch {
	case name == corev1.ResourceCPU, name == corev1.ResourceMemory, name == corev1.ResourceEphemeralStorage:
		return nil
	case isHugePages(name):
		// A size that is not a whole number of bytes fails every quantity
		// at the apiserver, so the name itself is refused.
		if _, ok := hugePageSize(name); !ok {
			return field.ErrorList{field.NotSupported(p, s, []string{"hugepages-<size> such as hugepages-2Mi"})}
		}
		return nil
	case isExtended(name) && len(validation.IsQualifiedName(s)) == 0:
		return nil
	}
	return field.ErrorList{field.Invalid(p, s, allowed)}
}

func isHugePages(name corev1.ResourceName) bool {
	return strings.HasPrefix(string(name), corev1.ResourceHugePagesPrefix)
}

// hugePageSize is the page size in bytes a hugepages-<size> name gives, and
// whether the apiserver can divide a quantity by it: the size parses, is
// positive and whole (IsHugePageResourceValueDivisible), and its Value did not
// overflow to 0 (the apiserver would divide by zero: e.g. hugepages-1e19).
func hugePageSize(name corev1.ResourceName) (int64, bool) {
	if !isHugePages(name) {
		return 0, false
	}
	// ParseQuantity's bounds: the name is the user's too (hugepages-1e-9999999).
	q, err := ParseQuantity(strings.TrimPrefix(string(name), corev1.ResourceHugePagesPrefix))
	if err != nil || q.Sign() <= 0 || q.MilliValue()%1000 != 0 || q.Value() <= 0 {
		return 0, false
	}
	return q.Value(), true
}

// isExtended reports whether name is an extended resource: domain-qualified,
// outside the kubernetes.io namespace and not a quota "requests." name.
func isExtended(name corev1.ResourceName) bool {
	s := string(name)
	domain, _, ok := strings.Cut(s, "/")
	return ok && !strings.HasPrefix(s, "requests.") &&
		domain != "kubernetes.io" && !strings.HasSuffix(domain, ".kubernetes.io")
}

func sortedNames(list corev1.ResourceList) []corev1.ResourceName {
	names := make([]corev1.ResourceName, 0, len(list))
	for n := range list {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
