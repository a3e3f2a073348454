package meshconfig

import (
	"slices"
	"testing"
)

// TestHugepagesAsAPIServer: sidecar.resources, initResources and
// healthcheckResources are checked as the apiserver checks a pod's container
// (k8s.io/kubernetes pkg/apis/core/validation validateResourceRequirements).
// Hugepages are not overcommittable there (helper.IsOvercommitAllowed): a
// request needs a limit and must equal it; and each quantity must be a whole
// number of pages (validateResourceQuantityHugePageValue). A MeshConfig the
// apiserver would refuse in every injected pod is denied, naming the field
// and quoting the apiserver's wording.
func TestHugepagesAsAPIServer(t *testing.T) {
	cases := []struct {
		name string
		res  map[string]any
		want []string // after "spec.sidecar.<field>."; nil = admitted
	}{
		{name: "limit only",
			res: map[string]any{"limits": map[string]any{"memory": "128Mi", "hugepages-2Mi": "8Mi"}}},
		{name: "request equals limit",
			res: map[string]any{"limits": map[string]any{"memory": "128Mi", "hugepages-1Gi": "2Gi"},
				"requests": map[string]any{"memory": "64Mi", "hugepages-1Gi": "2Gi"}}},
		{name: "zero",
			res: map[string]any{"limits": map[string]any{"memory": "128Mi", "hugepages-2Mi": "0"}}},
		{name: "request without a limit",
			res:  map[string]any{"requests": map[string]any{"memory": "64Mi", "hugepages-2Mi": "4Mi"}},
			want: []string{`limits[hugepages-2Mi]: Required value: Limit must be set for non overcommitable resources: set a hugepages-2Mi limit equal to the request (4Mi)`}},
		{name: "request below its limit",
			res: map[string]any{"limits": map[string]any{"memory": "128Mi", "hugepages-2Mi": "8Mi"},
				"requests": map[string]any{"memory": "64Mi", "hugepages-2Mi": "4Mi"}},
			want: []string{`requests[hugepages-2Mi]: Invalid value: "4Mi": must be equal to hugepages-2Mi limit of 8Mi: hugepages cannot be overcommitted`}},
		{name: "not a multiple of the page size",
			res:  map[string]any{"limits": map[string]any{"memory": "128Mi", "hugepages-2Mi": "3Mi"}},
			want: []string{`limits[hugepages-2Mi]: Invalid value: "3Mi": 3Mi is not positive integer multiple of hugepages-2Mi: hugepages are allocated in whole pages`}},
	}
	for _, tc := range cases {
		for _, f := range []string{"resources", "initResources", "healthcheckResources"} {
			t.Run(tc.name+"/"+f, func(t *testing.T) {
				r := Validate(V1alpha3, build(t, preset(t), kv{"spec.sidecar." + f, tc.res}))
				var want []string
				for _, w := range tc.want {
					want = append(want, "spec.sidecar."+f+"."+w)
				}
				if got := messages(r.Errors); !slices.Equal(got, want) {
					t.Errorf("spec.sidecar.%s %v:\n got %q\nwant %q", f, tc.res, got, want)
				}
			})
		}
	}
}
