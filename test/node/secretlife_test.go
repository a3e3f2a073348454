//go:build e2enode

package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/node"
)

// secretLifeDeleteBound is how long after its pod is gone a bootstrap Secret
// may still exist: the injector's controller deletes it on the pod's DELETE
// event, not after the grace period (injector.DefaultOrphanGracePeriod).
const secretLifeDeleteBound = 10 * time.Second

// TestSecretLife: on a real node, with kube-controller-manager (and so the
// garbage collector) running and the chart installed, an injected pod's
// bootstrap Secret exists as soon as the pod create returns, before any of
// its containers runs (the kubelet then mounts it and starts fsm-init); once
// the pod is gone its Secret goes within seconds; and no write we make ever
// gives a Secret an owner reference (FSM's controller does not run here, so
// every owner seen would be ours). The delay from the pod's DELETE event to
// the Secret's, both seen by one watch each in this process, is logged.
func TestSecretLife(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	specs, pulls := meshedPodImages(ctx, t)
	c := node.Start(t, node.Options{Images: append(specs, fsmWebhooksImage(t)), Pulls: pulls})
	cs := c.Clientset
	installChartReady(ctx, t, c)
	const ns = "secretlife"
	c.CreateNamespace(t, ns, map[string]string{monitoredByLabel: "fsm"})
	// Ready pods are not yet a routed Service: kube-proxy follows.
	waitAdmitting(t, c, ns)

	// Every change to a bootstrap Secret and every pod removal in ns, from
	// before the first pod. Not through cs: its one-minute client timeout
	// also ends a watch (http.Client.Timeout covers reading the body), and on
	// a loaded machine the pods take longer than that to start.
	wcfg := rest.CopyConfig(c.Config)
	wcfg.Timeout = 0
	wcs, err := kubernetes.NewForConfig(wcfg)
	if err != nil {
		t.Fatal(err)
	}
	secrets := watchEvents(ctx, t, "Secrets", wcs.CoreV1().Secrets(ns), injector.ProxyUUIDLabel)
	pods := watchEvents(ctx, t, "pods", wcs.CoreV1().Pods(ns), injector.ProxyUUIDLabel)

	const n = 3
	var created []*corev1.Pod
	for i := range n {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("life-%d", i), Annotations: map[string]string{injector.SidecarInjectionAnnotation: "enabled"}},
			Spec: corev1.PodSpec{
				TerminationGracePeriodSeconds: ptr.To[int64](1),
				Containers: []corev1.Container{{
					Name: "app", Image: node.ToolboxImage, ImagePullPolicy: corev1.PullNever, Args: []string{"pause"},
				}},
			},
		}
		p, err := cs.CoreV1().Pods(ns).Create(ctx, p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		id := p.Labels[injector.ProxyUUIDLabel]
		if id == "" {
			t.Fatalf("pod %s was not injected (no %s label)", p.Name, injector.ProxyUUIDLabel)
		}
		// The Secret is written inside the admission, so it is there the
		// moment the create returns, before the scheduler has even bound
		// the pod.
		s, err := cs.CoreV1().Secrets(ns).Get(ctx, fsmnames.BootstrapSecretName(id), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("pod %s created, its bootstrap Secret not readable: %v", p.Name, err)
		}
		if s.CreationTimestamp.After(p.CreationTimestamp.Time) {
			t.Errorf("Secret %s created %s, after its pod %s (%s)", s.Name, s.CreationTimestamp, p.Name, p.CreationTimestamp)
		}
		created = append(created, p)
	}

	// The kubelet mounts each Secret and runs the containers: every pod's
	// fsm-init started, at or after its Secret was created.
	for _, p := range created {
		c.WaitFor(t, "pod "+p.Name+"'s fsm-init to have started", 3*time.Minute, func(ctx context.Context) error {
			got, err := cs.CoreV1().Pods(ns).Get(ctx, p.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			st := initStatus(got, "fsm-init")
			if st == nil {
				return fmt.Errorf("no fsm-init status: %s", podsSummary(ctx, cs, ns))
			}
			var started metav1.Time
			switch {
			case st.State.Running != nil:
				started = st.State.Running.StartedAt
			case st.State.Terminated != nil:
				started = st.State.Terminated.StartedAt
			default:
				return fmt.Errorf("fsm-init not started: %+v (%s)", st.State, podsSummary(ctx, cs, ns))
			}
			s, err := cs.CoreV1().Secrets(ns).Get(ctx, fsmnames.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel]), metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("fsm-init of %s started while its Secret is unreadable: %w", p.Name, err)
			}
			// Both are whole seconds.
			if started.Before(&s.CreationTimestamp) {
				t.Errorf("fsm-init of %s started %s, before its Secret was created (%s)", p.Name, started, s.CreationTimestamp)
			}
			return nil
		})
	}

	for _, p := range created {
		if err := cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}}); err != nil {
			t.Fatal(err)
		}
	}
	var delays []time.Duration
	for _, p := range created {
		secret := fsmnames.BootstrapSecretName(p.Labels[injector.ProxyUUIDLabel])
		var podGone, secretGone time.Time
		c.WaitFor(t, "pod "+p.Name+" and its Secret to be deleted", 2*time.Minute, func(context.Context) error {
			podGone, secretGone = pods.deletedAt(p.Name), secrets.deletedAt(secret)
			for _, l := range []*eventLog{pods, secrets} {
				if err := l.ended(); err != nil {
					t.Fatal(err)
				}
			}
			if podGone.IsZero() || secretGone.IsZero() {
				return fmt.Errorf("pod deleted at %v, Secret at %v (%s)", podGone, secretGone, podsSummary(ctx, cs, ns))
			}
			return nil
		})
		d := secretGone.Sub(podGone)
		delays = append(delays, d)
		if d > secretLifeDeleteBound {
			t.Errorf("Secret %s deleted %s after its pod %s, want within %s", secret, d, p.Name, secretLifeDeleteBound)
		}
	}
	t.Logf("pod DELETE event -> its bootstrap Secret's DELETE event: %v (bound %s; grace period for Secrets without a pod %s)", delays, secretLifeDeleteBound, injector.DefaultOrphanGracePeriod)

	for name, evs := range secrets.all() {
		for _, e := range evs {
			if len(e.owners) > 0 {
				t.Errorf("Secret %s had owners %+v after a %s event: nobody here may write them", name, e.owners, e.typ)
			}
		}
	}
}

// recordedEvent is one watch event of an object.
type recordedEvent struct {
	typ    watch.EventType
	at     time.Time
	owners []metav1.OwnerReference
}

// eventLog records, by object name, the events of one watch.
type eventLog struct {
	*watchEnd
	mu     sync.Mutex
	events map[string][]recordedEvent
}

// watchEvents records the events of the objects c lists and watches
// carrying label (watchLabelled), named what in failures, until ctx ends.
func watchEvents[L runtime.Object](ctx context.Context, t *testing.T, what string, c listWatcher[L], label string) *eventLog {
	t.Helper()
	l := &eventLog{events: map[string][]recordedEvent{}}
	l.watchEnd = watchLabelled(ctx, t, what, c, label, func(ev watch.Event) {
		o, ok := ev.Object.(metav1.Object)
		if !ok {
			return
		}
		l.mu.Lock()
		l.events[o.GetName()] = append(l.events[o.GetName()], recordedEvent{typ: ev.Type, at: time.Now(), owners: o.GetOwnerReferences()})
		l.mu.Unlock()
	})
	return l
}

// deletedAt is when name's DELETED event arrived, or zero.
func (l *eventLog) deletedAt(name string) time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events[name] {
		if e.typ == watch.Deleted {
			return e.at
		}
	}
	return time.Time{}
}

func (l *eventLog) all() map[string][]recordedEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[string][]recordedEvent, len(l.events))
	for k, v := range l.events {
		out[k] = append([]recordedEvent(nil), v...)
	}
	return out
}
