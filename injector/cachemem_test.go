package injector

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BenchmarkCachedMetadata reports the live heap one cached meshed pod and
// one bootstrap Secret take in the manager's cache (decoded from protobuf,
// as the metadata informers receive them), under the cache's default
// transform (managedFields dropped) and under CacheByObject's. Reported as
// B/object, not timed; store keys and indexes come on top of it alike.
func BenchmarkCachedMetadata(b *testing.B) {
	const n = 2000
	pod := metav1.ObjectMeta{
		Namespace: "bookstore", GenerateName: "bookstore-v1-7d9f8c6b5d-", ResourceVersion: "1234567", Generation: 1,
		Labels: map[string]string{"app": "bookstore", "version": "v1", "pod-template-hash": "7d9f8c6b5d"},
		// The injector's and a rollout's.
		Annotations: map[string]string{
			"prometheus.io/scrape": "true", "prometheus.io/port": "15010", "prometheus.io/path": "/stats/prometheus",
			"kubectl.kubernetes.io/restartedAt": "2026-12-01T10:00:00Z",
		},
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "bookstore-v1-7d9f8c6b5d",
			UID: "0b6f3c52-5f54-4c4e-9a43-3d0f6c1d7e21", Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true)}},
	}
	secret := metav1.ObjectMeta{
		Namespace: "bookstore", ResourceVersion: "1234568",
		Labels: map[string]string{appNameLabel: appNameValue, appInstanceLabel: "fsm"},
		// FSM's controller appends the pod as owner.
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "bookstore-v1-7d9f8c6b5d-x8k2p",
			UID: "6a1e0f0e-3b9c-4f77-8d1b-9a9d2c6b4f10"}},
	}
	for _, kind := range []struct {
		name string
		obj  client.Object
		meta metav1.ObjectMeta
	}{{"pod", &corev1.Pod{}, pod}, {"secret", &corev1.Secret{}, secret}} {
		ours := cacheTransform(b, kind.obj)
		for _, tr := range []struct {
			name      string
			transform func(any) (any, error)
		}{{"default", cache.TransformStripManagedFields()}, {"CacheByObject", ours}} {
			b.Run(kind.name+"/"+tr.name, func(b *testing.B) {
				wire := make([][]byte, n)
				for i := range wire {
					m := &metav1.PartialObjectMetadata{ObjectMeta: *kind.meta.DeepCopy()}
					id := fmt.Sprintf("%08d-aaaa-4bbb-8ccc-%012d", i, i)
					m.UID = types.UID(fmt.Sprintf("%08d-dddd-4eee-8fff-%012d", i, i))
					m.Labels[ProxyUUIDLabel] = id
					m.Name = fmt.Sprintf("%s%05d", m.GenerateName, i)
					if kind.name == "secret" {
						m.Name = BootstrapSecretName(id)
					}
					m.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
						APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{}}}`)}}
					var err error
					if wire[i], err = m.Marshal(); err != nil {
						b.Fatal(err)
					}
				}
				var perObject float64
				for b.Loop() {
					kept := make([]any, n) // not counted: the store's own slots
					perObject = liveBytesPer(n, func() any {
						for i, w := range wire {
							m := &metav1.PartialObjectMetadata{}
							if err := m.Unmarshal(w); err != nil {
								b.Fatal(err)
							}
							o, err := tr.transform(m)
							if err != nil {
								b.Fatal(err)
							}
							kept[i] = o
						}
						return kept
					})
				}
				b.ReportMetric(perObject, "B/object")
			})
		}
	}
}

// BenchmarkPodUUIDIndex reports the live heap the pod cache's uuid index
// takes per meshed pod in client-go's indexer: indexPodsByUUID's one
// namespaced key against the two keys controller-runtime's IndexField
// would store ("<ns>/<id>" and "__all_namespaces/<id>"). Not timed.
func BenchmarkPodUUIDIndex(b *testing.B) {
	const n = 5000
	pods := make([]*metav1.PartialObjectMetadata, n)
	for i := range pods {
		pods[i] = &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{
			Namespace: fmt.Sprintf("bookstore-%d", i%4), Name: fmt.Sprintf("bookstore-v1-7d9f8c6b5d-%05d", i),
			Labels: map[string]string{ProxyUUIDLabel: fmt.Sprintf("%08d-aaaa-4bbb-8ccc-%012d", i, i)},
		}}
	}
	bothKeys := func(o any) ([]string, error) {
		keys, err := podUUIDIndexFunc(o)
		for _, k := range keys {
			_, id, _ := strings.Cut(k, "/")
			keys = append(keys, "__all_namespaces/"+id)
		}
		return keys, err
	}
	for _, index := range []struct {
		name string
		fn   toolscache.IndexFunc
	}{{"IndexField", bothKeys}, {"indexPodsByUUID", podUUIDIndexFunc}} {
		b.Run(index.name, func(b *testing.B) {
			var perPod float64
			for b.Loop() {
				perPod = liveBytesPer(n, func() any {
					store := toolscache.NewIndexer(toolscache.MetaNamespaceKeyFunc, toolscache.Indexers{podUUIDIndexName: index.fn})
					for _, p := range pods {
						if err := store.Add(p); err != nil {
							b.Fatal(err)
						}
					}
					return store
				})
			}
			b.ReportMetric(perPod, "B/pod")
		})
	}
}

// liveBytesPer is the live heap what build returns holds, divided by n.
func liveBytesPer(n int, build func() any) float64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	kept := build()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(kept)
	return float64(after.HeapAlloc-before.HeapAlloc) / float64(n)
}

func TestPodUUIDIndexFunc(t *testing.T) {
	for _, tc := range []struct {
		name string
		obj  any
		want []string
	}{
		{"meshed pod", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: "a", Labels: map[string]string{ProxyUUIDLabel: "u-1", "app": "x"}}}, []string{"bookstore/u-1"}},
		{"full pod", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: "a", Labels: map[string]string{ProxyUUIDLabel: "u-2"}}}, []string{"bookstore/u-2"}},
		{"no uuid", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: "a", Labels: map[string]string{"app": "x"}}}, nil},
		{"empty uuid", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "bookstore", Name: "a", Labels: map[string]string{ProxyUUIDLabel: ""}}}, nil},
		{"no namespace", &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: "a", Labels: map[string]string{ProxyUUIDLabel: "u-3"}}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := podUUIDIndexFunc(tc.obj)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("podUUIDIndexFunc = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
	if _, err := podUUIDIndexFunc("not an object"); err == nil || !strings.Contains(err.Error(), "string") {
		t.Errorf("podUUIDIndexFunc(string) error = %v, want one naming the type", err)
	}
}
