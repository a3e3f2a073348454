package uninstall

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// The converters write the MeshConfig CRD's conversion stanza only while
// they hold the conversion-owner Lease (webhooks/conversionlease.go), and
// a server pod keeps running its controllers through its preStop sleep after
// it is deleted. Setting the stanza to None while a converter still owns it
// starts a fight (measured on the node: re-pointed eight times in 4.5 s),
// and every instant it points at a converter the Service no longer routes to
// fails reads of old versions. So the hook takes the Lease first, as an
// administrator would: the owner sees another holder at its next renewal
// (client-go's retry period) and writes nothing more; the other replicas
// cannot acquire it while the hook renews it.

const (
	// hookHolder is the hook's identity in the Lease: this mesh's, so
	// `certs status` still names the mesh as the stanza's owner meanwhile.
	hookHolder = "uninstall-hook"
	// leaseSeconds and leaseRenew are the converters' own clock
	// (client-go's defaults, webhooks' leaseTiming).
	leaseSeconds = 15
	leaseRenew   = 2 * time.Second
)

// ownerSeesHolder is how long the hook waits, once it holds the Lease, for
// the previous owner to have renewed (and so observed the new holder): one
// retry period and the same again for a slow apiserver.
var ownerSeesHolder = 2 * leaseRenew

// releaseTimeout bounds the release of a Lease the hook still holds when
// it stops early: well inside the 30 s a Job's pod has after SIGTERM.
const releaseTimeout = 5 * time.Second

// leaseHold is the conversion-owner Lease held by the hook until release.
type leaseHold struct {
	cs       kubernetes.Interface
	ns, name string
	id       string
	log      logr.Logger
	stop     context.CancelFunc
	renewals sync.WaitGroup
	released bool
}

// holdConversionLease takes the Lease from whoever holds it and renews it
// until release. A Lease that does not exist means no converter ever owned
// the stanza: nothing to hold (nil, nil).
func holdConversionLease(ctx context.Context, cs kubernetes.Interface, leaseNS, meshID string, log logr.Logger) (*leaseHold, error) {
	name := webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)
	h := &leaseHold{cs: cs, ns: leaseNS, name: name, id: meshID + "|" + hookHolder, log: log}
	found, err := h.write(ctx, true)
	if err != nil {
		return nil, fmt.Errorf("taking the conversion-owner Lease %s/%s: %w", leaseNS, name, err)
	}
	if !found {
		return nil, nil
	}
	log.Info("Took the conversion-owner Lease: no converter re-points the CRD from now on", "lease", leaseNS+"/"+name)
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h.stop = stop
	h.renewals.Go(func() {
		t := time.NewTicker(leaseRenew)
		defer t.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if _, err := h.write(rctx, false); err != nil && rctx.Err() == nil {
					log.Error(err, "Renewing the conversion-owner Lease; retrying", "lease", leaseNS+"/"+name)
				}
			}
		}
	})
	return h, nil
}

// write makes the hook the Lease's holder (take: a new acquisition) or
// renews it; found is false when the Lease does not exist.
func (h *leaseHold) write(ctx context.Context, take bool) (found bool, err error) {
	leases := h.cs.CoordinationV1().Leases(h.ns)
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, h.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.NewMicroTime(time.Now())
		if take {
			if ptr.Deref(l.Spec.HolderIdentity, "") != h.id {
				l.Spec.LeaseTransitions = ptr.To(ptr.Deref(l.Spec.LeaseTransitions, 0) + 1)
			}
			l.Spec.HolderIdentity = ptr.To(h.id)
			l.Spec.AcquireTime = &now
		}
		l.Spec.LeaseDurationSeconds = ptr.To[int32](leaseSeconds)
		l.Spec.RenewTime = &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	return err == nil, err
}

// release stops renewing and frees the Lease as client-go does on a clean
// stop (no holder, a one-second lease), so another mesh's converter takes
// the stanza over at once. Idempotent; nil receiver: nothing held.
func (h *leaseHold) release(ctx context.Context) error {
	if h == nil || h.released {
		return nil
	}
	h.stop()
	h.renewals.Wait()
	leases := h.cs.CoordinationV1().Leases(h.ns)
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		l, err := leases.Get(ctx, h.name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ptr.Deref(l.Spec.HolderIdentity, "") != h.id {
			return nil // someone took it since: theirs now
		}
		now := metav1.NewMicroTime(time.Now())
		l.Spec = coordinationv1.LeaseSpec{HolderIdentity: ptr.To(""), LeaseDurationSeconds: ptr.To[int32](1),
			AcquireTime: &now, RenewTime: &now, LeaseTransitions: l.Spec.LeaseTransitions}
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("releasing the conversion-owner Lease %s/%s: %w", h.ns, h.name, err)
	}
	h.released = true
	h.log.Info("Released the conversion-owner Lease", "lease", h.ns+"/"+h.name)
	return nil
}
