package webhooks

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// The MeshConfig CRD, and so its conversion stanza, is cluster-wide: with
// several meshes in one cluster every mesh's converter would publish its own
// Service and caBundle, overwriting the others' every few seconds. One
// converter owns the stanza at a time, by a coordination.k8s.io Lease named
// after the CRD in a namespace every mesh shares (kube-system by default);
// the others serve conversions but never write the stanza. When the owner
// stops renewing, another mesh's converter takes over within the lease
// duration and repoints the stanza at itself.

const (
	// DefaultConversionLeaseNamespace holds the conversion-owner Lease.
	DefaultConversionLeaseNamespace = "kube-system"
	// leaseHolderSep separates the mesh from the replica in the holder
	// identity: "<fsm namespace>/<mesh>|<replica>".
	leaseHolderSep = "|"
)

// leaseTiming is client-go's leader election clock (its documented defaults).
type leaseTiming struct{ duration, renew, retry time.Duration }

var defaultLeaseTiming = leaseTiming{duration: 15 * time.Second, renew: 10 * time.Second, retry: 2 * time.Second}

// ConversionLeaseName is the Lease that names the owner of crd's conversion
// stanza.
func ConversionLeaseName(crd string) string {
	return "fsm-webhooks-conversion-" + strings.ReplaceAll(crd, ".", "-")
}

// ConversionOwnerMesh is the mesh ("<fsm namespace>/<mesh>") in a Lease's
// holder identity, or "" when nobody holds it.
func ConversionOwnerMesh(holder string) string {
	mesh, _, _ := strings.Cut(holder, leaseHolderSep)
	return mesh
}

// ConversionOwner reads which mesh ("<fsm namespace>/<mesh>") holds the
// conversion-owner Lease of crd in leaseNamespace (empty: the default) at
// now; "" when nobody holds a live one. For readers outside the serving
// process (`certs status`, root rotation).
func ConversionOwner(ctx context.Context, client kubernetes.Interface, leaseNamespace, crd string, now time.Time) (string, error) {
	if leaseNamespace == "" {
		leaseNamespace = DefaultConversionLeaseNamespace
	}
	name := ConversionLeaseName(crd)
	l, err := client.CoordinationV1().Leases(leaseNamespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("reading Lease %s/%s: %w", leaseNamespace, name, err)
	}
	sp := l.Spec
	if sp.HolderIdentity == nil || sp.RenewTime == nil || sp.LeaseDurationSeconds == nil ||
		now.After(sp.RenewTime.Add(time.Duration(*sp.LeaseDurationSeconds)*time.Second)) {
		return "", nil
	}
	return ConversionOwnerMesh(*sp.HolderIdentity), nil
}

// conversionOwner says whether this process owns a CRD's stanza now, from
// the elector's last observed Lease (client-go runs the callbacks on their
// own goroutines, so they only signal; the state is read here).
type conversionOwner struct {
	mu sync.Mutex
	le *leaderelection.LeaderElector
}

// state is whether this process owns the stanza and who does ("" unknown).
func (o *conversionOwner) state() (owns bool, holder string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.le == nil {
		return false, ""
	}
	return o.le.IsLeader(), o.le.GetLeader()
}

func (o *conversionOwner) use(le *leaderelection.LeaderElector) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.le = le
}

// meshID names this mesh in the Lease: "<fsm namespace>/<mesh>".
func (h *hook) meshID() string { return h.s.opts.Namespace + "/" + h.s.opts.MeshName }

// ownsConversion: this process writes the CRD's conversion stanza.
func (h *hook) ownsConversion() bool {
	owns, _ := h.owner.state()
	return owns
}

// otherMeshConverts: another mesh's converter owns the stanza. While the
// owner is unknown (election not yet observed), this mesh assumes it is
// its own: certs keep waiting for the caBundle to settle.
func (h *hook) otherMeshConverts() bool {
	owns, holder := h.owner.state()
	return !owns && holder != "" && ConversionOwnerMesh(holder) != h.meshID()
}

// mustRepoint: this owner has just taken the stanza over and it still
// targets someone else (the previous owner, another mesh's Service). Only
// then is the target replaced; afterwards a target someone sets by hand is
// kept, as SetConversion does.
func (h *hook) mustRepoint(crd *apiextv1.CustomResourceDefinition) bool {
	if !h.takeover.Load() {
		return false
	}
	c := crd.Spec.Conversion
	if c == nil || c.Webhook == nil || c.Webhook.ClientConfig == nil {
		return false // SetConversion writes the whole stanza anyway
	}
	got := c.Webhook.ClientConfig.DeepCopy()
	got.CABundle = nil
	if apiequality.Semantic.DeepEqual(got, h.ep.ConversionClientConfig(h.w.Registration.Path, nil)) {
		h.takeover.Store(false)
		return false
	}
	return true
}

// runConversionLease campaigns for h's CRD until ctx ends, again after every
// loss; onChange runs when ownership changes hands.
func (h *hook) runConversionLease(ctx context.Context, onChange func()) error {
	opts := h.s.opts
	host, _ := os.Hostname()
	id := h.meshID() + leaseHolderSep + host + "-" + rand.String(5)
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, opts.ConversionLeaseNamespace, ConversionLeaseName(h.w.Registration.Name),
		h.s.client.CoreV1(), h.s.client.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: id})
	if err != nil {
		return fmt.Errorf("conversion owner Lease %s/%s: %w", opts.ConversionLeaseNamespace, ConversionLeaseName(h.w.Registration.Name), err)
	}
	t := h.s.leaseTiming
	for ctx.Err() == nil {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: lock, LeaseDuration: t.duration, RenewDeadline: t.renew, RetryPeriod: t.retry,
			// A stopping owner hands over now, not after the lease expires.
			ReleaseOnCancel: true,
			Name:            "conversion of " + h.w.Registration.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) {
					h.log.Info("owning the CRD's conversion stanza", "crd", h.w.Registration.Name)
					h.takeover.Store(true)
					onChange()
				},
				OnStoppedLeading: onChange,
				OnNewLeader: func(holder string) {
					if holder != id {
						h.log.Info("the CRD's conversion stanza is owned by another converter", "crd", h.w.Registration.Name, "owner", holder)
					}
					onChange()
				},
			},
		})
		if err != nil {
			return fmt.Errorf("conversion owner election: %w", err)
		}
		// Set before this elector can lead, not in OnStartedLeading alone:
		// the elector reports itself the leader (ownsConversion) as soon as
		// it holds the Lease, and OnNewLeader's reconcile raced
		// OnStartedLeading. Losing that race wrote the new owner's caBundle
		// under the old owner's target (every conversion failing TLS) and
		// held the repoint back as a repeated repair.
		h.takeover.Store(true)
		h.owner.use(le)
		// client-go's elector logs through the context's logger.
		le.Run(logr.NewContext(ctx, electionLog(h.log)))
		// Lost (or never renewed): not the owner until a new elector
		// acquires the Lease.
		h.owner.use(nil)
		onChange()
	}
	return nil
}

// electionLog is log for client-go's leader election, which logs a lost race
// for the Lease at error level: a Create answered AlreadyExists (replicas
// starting together) or an Update answered Conflict (replicas taking over a
// released or expired Lease). That is the election working: the loser
// follows the winner and campaigns every retry period. Those lines are
// logged at info, with the reason; any other error stays an error.
func electionLog(log logr.Logger) logr.Logger {
	sink := log.GetSink()
	if sink == nil {
		return log
	}
	// One frame more between the caller and sink: raceAsInfo's own method.
	if cd, ok := sink.(logr.CallDepthLogSink); ok {
		sink = cd.WithCallDepth(1)
	}
	return logr.New(raceAsInfo{sink})
}

// raceAsInfo is electionLog's LogSink.
type raceAsInfo struct{ logr.LogSink }

// Init does nothing: the sink was initialised by the logger it came from
// (zapr's Init would add to the caller skip of a sink others share).
func (raceAsInfo) Init(logr.RuntimeInfo) {}

func (s raceAsInfo) Error(err error, msg string, kv ...any) {
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		if s.Enabled(0) {
			s.Info(0, msg, append(slices.Clip(kv), "reason", err.Error())...)
		}
		return
	}
	s.LogSink.Error(err, msg, kv...)
}

func (s raceAsInfo) WithValues(kv ...any) logr.LogSink {
	return raceAsInfo{s.LogSink.WithValues(kv...)}
}

func (s raceAsInfo) WithName(name string) logr.LogSink { return raceAsInfo{s.LogSink.WithName(name)} }
