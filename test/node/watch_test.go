//go:build e2enode

package node_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// listWatcher is a typed client of one resource, as
// kubernetes.Interface's CoreV1().Pods(ns) is.
type listWatcher[L runtime.Object] interface {
	List(context.Context, metav1.ListOptions) (L, error)
	Watch(context.Context, metav1.ListOptions) (watch.Interface, error)
}

// watchEnd says whether, when and why a watch of watchLabelled ended.
type watchEnd struct {
	what string
	done chan struct{} // closed once it ended
	at   time.Time     // set before done is closed
	why  error         // set before done is closed
}

// ended is nil while the watch runs, else an error naming what it watched,
// when and why it ended: what was recorded from it is incomplete.
func (e *watchEnd) ended() error {
	select {
	case <-e.done:
		return fmt.Errorf("the watch of %s ended at %s: %w; its events are incomplete", e.what, e.at.Format(time.RFC3339Nano), e.why)
	default:
		return nil
	}
}

// watchLabelled hands handle an Added event for each object carrying label
// that c lists now, then, one at a time, every change to them after that
// list until ctx or the test ends. A watch that ends early (a connection
// reset on a loaded node, the apiserver's watch timeout) resumes from the
// last event's resourceVersion (client-go's RetryWatcher), so no event is
// lost or handed twice; one that cannot resume (410 Gone: the apiserver no
// longer has that version) ends, as the returned watchEnd says.
func watchLabelled[L runtime.Object](ctx context.Context, t *testing.T, what string, c listWatcher[L], label string, handle func(watch.Event)) *watchEnd {
	t.Helper()
	what = fmt.Sprintf("%s labelled %s", what, label)
	list, err := c.List(ctx, metav1.ListOptions{LabelSelector: label})
	if err != nil {
		t.Fatalf("listing the %s to watch: %v", what, err)
	}
	items, err := meta.ExtractList(list)
	if err != nil {
		t.Fatalf("listing the %s to watch: %v", what, err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		t.Fatalf("listing the %s to watch: %v", what, err)
	}
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, lm.GetResourceVersion(), &cache.ListWatch{
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = label
			return c.Watch(ctx, o)
		},
	})
	if err != nil {
		t.Fatalf("watching the %s: %v", what, err)
	}
	for _, o := range items {
		handle(watch.Event{Type: watch.Added, Object: o})
	}
	end := &watchEnd{what: what, done: make(chan struct{})}
	go func() {
		defer close(end.done)
		// An Error is the last event: RetryWatcher sends one only when it
		// cannot go on.
		for ev := range rw.ResultChan() {
			if ev.Type == watch.Error {
				end.why = apierrors.FromObject(ev.Object)
				break
			}
			handle(ev)
		}
		rw.Stop()
		end.at = time.Now()
		switch {
		case end.why != nil:
		case ctx.Err() != nil:
			end.why = context.Cause(ctx)
		default:
			end.why = errors.New("stopped at the test's end")
		}
	}()
	t.Cleanup(func() {
		rw.Stop()
		<-end.done
	})
	return end
}

// TestWatchLabelled drives watchLabelled through a fake clientset whose
// watches follow a script: the list's objects come first as Added events,
// every later event comes once, each watch after the first starts at the
// last resourceVersion seen (a bookmark's included), and only an Error the
// watch cannot resume from (410) ends it.
func TestWatchLabelled(t *testing.T) {
	pod := func(name, rv string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, ResourceVersion: rv, Labels: map[string]string{"app": "x"}}}
	}
	const label = "app=x"
	for _, tc := range []struct {
		name string
		// script[i] is what the i-th watch sends; it closes after them
		// unless it is the last one.
		script     [][]watch.Event
		wantRVs    []string // of the watch calls, in order
		wantEvents []string
		wantEnd    string // in ended's error; empty: still running
	}{
		{
			name: "a watch closed early resumes from the last event",
			script: [][]watch.Event{
				{{Type: watch.Modified, Object: pod("a", "11")}, {Type: watch.Added, Object: pod("b", "12")}},
				{{Type: watch.Deleted, Object: pod("a", "13")}},
			},
			wantRVs:    []string{"10", "12"},
			wantEvents: []string{"ADDED a 10", "MODIFIED a 11", "ADDED b 12", "DELETED a 13"},
		},
		{
			name: "a bookmark moves the resume point and is not handed on",
			script: [][]watch.Event{
				{{Type: watch.Bookmark, Object: pod("", "20")}},
				{{Type: watch.Added, Object: pod("b", "21")}},
			},
			wantRVs:    []string{"10", "20"},
			wantEvents: []string{"ADDED a 10", "ADDED b 21"},
		},
		{
			name: "an internal error resumes",
			script: [][]watch.Event{
				{{Type: watch.Modified, Object: pod("a", "11")}, {Type: watch.Error, Object: &apierrors.NewInternalError(errors.New("etcd hiccup")).ErrStatus}},
				{{Type: watch.Deleted, Object: pod("a", "12")}},
			},
			wantRVs:    []string{"10", "11"},
			wantEvents: []string{"ADDED a 10", "MODIFIED a 11", "DELETED a 12"},
		},
		{
			name: "410 Gone ends it",
			script: [][]watch.Event{
				{{Type: watch.Modified, Object: pod("a", "11")}},
				{{Type: watch.Error, Object: &apierrors.NewResourceExpired("too old resource version: 11 (30)").ErrStatus}},
			},
			wantRVs:    []string{"10", "11"},
			wantEvents: []string{"ADDED a 10", "MODIFIED a 11"},
			wantEnd:    "the watch of pods labelled app=x ended at ",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cs := k8sfake.NewClientset()
			cs.PrependReactor("list", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
				if got := a.(k8stesting.ListAction).GetListRestrictions().Labels.String(); got != label {
					t.Errorf("listed with labels %q, want %q", got, label)
				}
				return true, &corev1.PodList{ListMeta: metav1.ListMeta{ResourceVersion: "10"}, Items: []corev1.Pod{*pod("a", "10")}}, nil
			})
			var mu sync.Mutex
			var rvs, events []string
			cs.PrependWatchReactor("pods", func(a k8stesting.Action) (bool, watch.Interface, error) {
				r := a.(k8stesting.WatchAction).GetWatchRestrictions()
				if got := r.Labels.String(); got != label {
					t.Errorf("watch %d with labels %q, want %q", len(rvs), got, label)
				}
				mu.Lock()
				defer mu.Unlock()
				i := len(rvs)
				rvs = append(rvs, r.ResourceVersion)
				w := watch.NewFakeWithChanSize(8, false)
				if i < len(tc.script) {
					for _, ev := range tc.script[i] {
						w.Action(ev.Type, ev.Object)
					}
				}
				if i < len(tc.script)-1 {
					w.Stop()
				}
				return true, w, nil
			})

			end := watchLabelled(t.Context(), t, "pods", cs.CoreV1().Pods("ns"), label, func(ev watch.Event) {
				o := ev.Object.(metav1.Object)
				mu.Lock()
				events = append(events, fmt.Sprintf("%s %s %s", ev.Type, o.GetName(), o.GetResourceVersion()))
				mu.Unlock()
			})
			done := func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(rvs) >= len(tc.wantRVs) && len(events) >= len(tc.wantEvents) && (tc.wantEnd == "") == (end.ended() == nil)
			}
			// RetryWatcher restarts a watch at most once a second.
			for deadline := time.Now().Add(10 * time.Second); !done() && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(rvs, tc.wantRVs) {
				t.Errorf("watches started at resourceVersions %q, want %q", rvs, tc.wantRVs)
			}
			if !slices.Equal(events, tc.wantEvents) {
				t.Errorf("handed %q, want %q", events, tc.wantEvents)
			}
			switch err := end.ended(); {
			case tc.wantEnd == "" && err != nil:
				t.Errorf("ended: %v, want it running", err)
			case tc.wantEnd != "" && (err == nil || !strings.Contains(err.Error(), tc.wantEnd) || !apierrors.IsResourceExpired(errors.Unwrap(err))):
				t.Errorf("ended: %v, want an error containing %q wrapping the 410", err, tc.wantEnd)
			}
		})
	}
}
