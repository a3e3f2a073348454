package main

import (
	"context"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestChurnerKeepsTheNewest(t *testing.T) {
	ctx := context.Background()
	cl := fake.NewClientBuilder().Build()
	ch := &churner{cl: cl, keep: 2, secrets: true}
	after := ch.created(ctx)
	for i, name := range []string{"p-0", "p-1", "p-2", "p-3"} {
		key := client.ObjectKey{Namespace: nsSecret, Name: name}
		for _, o := range []client.Object{
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: nsSecret}},
			&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s-" + name[2:], Namespace: nsSecret}},
		} {
			if err := cl.Create(ctx, o); err != nil {
				t.Fatal(err)
			}
		}
		after(key, nil)
		if i == 1 {
			// A failed create is neither kept nor deleted.
			after(client.ObjectKey{Namespace: nsSecret, Name: "p-9"}, context.DeadlineExceeded)
		}
	}
	var pods corev1.PodList
	var secrets corev1.SecretList
	if err := cl.List(ctx, &pods); err != nil {
		t.Fatal(err)
	}
	if err := cl.List(ctx, &secrets); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	for _, s := range secrets.Items {
		names = append(names, s.Name)
	}
	slices.Sort(names)
	if want := []string{"p-2", "p-3", "s-2", "s-3"}; !slices.Equal(names, want) {
		t.Errorf("left %q, want %q", names, want)
	}
	if ch.deleted.Load() != 2 || ch.failed.Load() != 0 {
		t.Errorf("deleted %d, failed %d; want 2 pods deleted, no failures", ch.deleted.Load(), ch.failed.Load())
	}
}
