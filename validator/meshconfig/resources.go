package meshconfig

import (
	"errors"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/flomesh-io/fsm-webhooks/meshconfig/rules"
)

// validate parses the quantities and applies rules.Resources, the rule the
// injector applies to the containers it adds.
func (r *resources) validate(p *field.Path) field.ErrorList {
	var errs field.ErrorList
	req := corev1.ResourceRequirements{}
	parse := func(lp *field.Path, in map[string]quantity) corev1.ResourceList {
		if in == nil {
			return nil
		}
		out := corev1.ResourceList{}
		names := make([]string, 0, len(in))
		for n := range in {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			q, err := rules.ParseQuantity(string(in[n]))
			if err != nil {
				errs = append(errs, field.Invalid(lp.Key(n), string(in[n]), quantityDetail(err)))
				continue
			}
			out[corev1.ResourceName(n)] = q
		}
		return out
	}
	req.Limits = parse(p.Child("limits"), r.Limits)
	req.Requests = parse(p.Child("requests"), r.Requests)
	for _, c := range r.Claims {
		req.Claims = append(req.Claims, corev1.ResourceClaim{Name: c.Name})
	}
	if len(errs) > 0 {
		// Comparing requests with limits needs every quantity.
		return errs
	}
	return rules.Resources(p, req)
}

// quantityDetail is the detail for a quantity rules.ParseQuantity refused:
// the bounds only when they are what it is over, so the usual message stays.
func quantityDetail(err error) string {
	if errors.Is(err, rules.ErrCostlyQuantity) {
		return rules.QuantityDetail
	}
	return "must be a quantity such as 500m, 2 or 64Mi"
}
