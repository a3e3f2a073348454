package injector

import (
	"encoding/json"
	"fmt"
	"strconv"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// CreatePatch returns the JSON patch from original to mutated. Both are
// marshalled from the Go types, so fields the types do not know are never
// removed. Containers the mutation inserted become single "add" ops at their
// index (a positional diff would instead rewrite every following container
// field by field, growing with the app containers' size); what changed inside
// existing containers (rewritten probes) is diffed as usual.
func CreatePatch(original, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	orig := original.DeepCopy()
	orig.ManagedFields = nil
	mut := mutated.DeepCopy()
	mut.ManagedFields = nil

	var ops []jsonpatch.Operation
	// mid is the original with the new containers already in place.
	mid := orig.DeepCopy()
	for _, l := range []struct {
		path     string
		orig     []corev1.Container
		mutated  []corev1.Container
		midField *[]corev1.Container
	}{
		{"/spec/initContainers", orig.Spec.InitContainers, mut.Spec.InitContainers, &mid.Spec.InitContainers},
		{"/spec/containers", orig.Spec.Containers, mut.Spec.Containers, &mid.Spec.Containers},
	} {
		if len(l.orig) == 0 {
			// Nothing to shift: the diff adds the whole list in one op.
			continue
		}
		merged, inserted, ok := alignInsertions(l.orig, l.mutated)
		if !ok {
			continue
		}
		for _, i := range inserted {
			ops = append(ops, jsonpatch.NewOperation("add", l.path+"/"+strconv.Itoa(i), &l.mutated[i]))
		}
		*l.midField = merged
	}

	a, err := json.Marshal(mid)
	if err != nil {
		return nil, fmt.Errorf("marshalling original pod: %w", err)
	}
	b, err := json.Marshal(mut)
	if err != nil {
		return nil, fmt.Errorf("marshalling mutated pod: %w", err)
	}
	rest, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		return nil, fmt.Errorf("diffing pods: %w", err)
	}
	return append(ops, rest...), nil
}

// alignInsertions checks that mutated is orig with containers inserted
// (matched by name, order kept). It returns orig's containers at their final
// indices with the inserted ones in between, and the inserted indices in
// ascending order, so applying "add" ops in that order is valid.
func alignInsertions(orig, mutated []corev1.Container) ([]corev1.Container, []int, bool) {
	if len(mutated) < len(orig) {
		return nil, nil, false
	}
	merged := make([]corev1.Container, 0, len(mutated))
	var inserted []int
	j := 0
	for i := range mutated {
		if j < len(orig) && mutated[i].Name == orig[j].Name {
			merged = append(merged, orig[j])
			j++
			continue
		}
		merged = append(merged, mutated[i])
		inserted = append(inserted, i)
	}
	if j != len(orig) {
		return nil, nil, false
	}
	return merged, inserted, true
}
