// Package uninstall is `fsm-webhooks uninstall-hook`, the chart's pre-delete
// step: it removes what would otherwise outlive the servers, in an order that
// cannot deadlock the cluster.
package uninstall

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextclient "k8s.io/apiextensions-apiserver/pkg/client/clientset/clientset"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// Options say what the chart's pre-delete hook removes.
type Options struct {
	Namespace, MeshName string
	// Deployment running the servers; scaled to zero and awaited so no
	// server re-creates or re-patches anything afterwards. Empty skips it.
	Deployment string
	// MeshConfigName is deleted last (the validator refuses that delete
	// while its configuration exists). Empty skips it.
	MeshConfigName string
	// KeepConfigurations leaves the mesh's webhook configurations in place:
	// a hand-back to FSM, whose servers the Services already select and
	// which own them from now on (docs/migrate-from-fsm.md). Deleting them
	// would admit pods without a sidecar until FSM's injector re-registers.
	KeepConfigurations bool
	// ConversionLeaseNamespace holds the converters' conversion-owner Lease
	// (serve keeps it in webhooks.DefaultConversionLeaseNamespace); empty: the hook does not take
	// it and only re-releases the stanza while the servers stop.
	ConversionLeaseNamespace string
	Log                      logr.Logger
}

var meshConfigGVR = schema.GroupVersionResource{Group: fsmnames.ConfigGroup, Version: "v1alpha3", Resource: fsmnames.MeshConfigResource}

// Run removes, in an order that cannot deadlock the cluster, what would
// otherwise outlive the servers: the webhook configurations first (a
// failurePolicy Fail webhook without a server blocks pod creation; kept when
// handed back to FSM, whose servers then answer them), then the
// servers themselves, releasing the CRD's conversion stanza while they drain
// (reads of old versions must not depend on a converter that is gone, nor
// find it gone before the stanza), then hands the mesh's bootstrap Secrets to
// the garbage collector (the injector's controller deleted each with its pod;
// with the servers stopped and no webhook left, nothing creates or deletes
// one meanwhile), then the mesh's MeshConfig.
// Every step is idempotent and treats NotFound as done, so a retried hook
// converges.
func Run(ctx context.Context, cfg *rest.Config, o Options) error {
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	apiext, err := apiextclient.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("apiextensions client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("metadata client: %w", err)
	}
	return run(ctx, cs, apiext, dyn, meta, o)
}

// run is Run through the given clients.
func run(ctx context.Context, cs kubernetes.Interface, apiext apiextclient.Interface, dyn dynamic.Interface, meta metadata.Interface, o Options) error {
	log := o.Log
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	mutating, validating := fsmnames.MutatingConfigurationName(o.MeshName), fsmnames.ValidatingConfigurationName(o.MeshName)
	if o.KeepConfigurations {
		log.Info("Kept the webhook configurations: handed back to FSM", "mutating", mutating, "validating", validating)
	} else if err := deleteConfigurations(ctx, cs, mutating, validating, log); err != nil {
		return err
	}

	// The conversion stanza goes to None while the converters still serve,
	// so that reads of old MeshConfig versions never find it pointing at a
	// converter that is gone: first the hook holds the conversion-owner
	// Lease (no converter re-points the stanza any more), then None, then
	// the servers stop. If a converter still re-points it (a Lease the hook
	// could not take), it is released again at every poll while the
	// servers' pods terminate.
	release := func(ctx context.Context) error { return releaseConversion(ctx, apiext, o.Namespace, log) }
	var hold *leaseHold
	if o.Deployment != "" {
		ours, err := conversionOurs(ctx, apiext, o.Namespace)
		if err != nil {
			return err
		}
		if ours && o.ConversionLeaseNamespace != "" {
			if hold, err = holdConversionLease(ctx, cs, o.ConversionLeaseNamespace, o.Namespace+"/"+o.MeshName, log); err != nil {
				return err
			}
			if hold != nil {
				// Also when ctx ends (a timeout, the Job's SIGTERM): the
				// Lease is freed at once instead of expiring leaseSeconds
				// later, bounded so a gone apiserver cannot hang the exit.
				defer func() {
					rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
					defer cancel()
					if err := hold.release(rctx); err != nil {
						log.Error(err, "Leaving the conversion-owner Lease to expire")
					}
				}()
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(ownerSeesHolder):
				}
			}
		}
	}
	if err := release(ctx); err != nil {
		return err
	}
	if o.Deployment != "" {
		if err := scaleToZero(ctx, cs, o.Namespace, o.Deployment, release, log); err != nil {
			return err
		}
		if err := release(ctx); err != nil {
			return err
		}
	}
	// Another mesh's converter may own the stanza from now on.
	if err := hold.release(ctx); err != nil {
		return err
	}

	if err := handOverBootstrapSecrets(ctx, cs, meta, o.MeshName, log); err != nil {
		return fmt.Errorf("handing the bootstrap Secrets of mesh %s to the garbage collector: %w", o.MeshName, err)
	}

	if o.MeshConfigName != "" {
		return deleteOwnMeshConfig(ctx, dyn, o.Namespace, o.MeshConfigName, log)
	}
	return nil
}

// CreatedByAnnotation marks the MeshConfig the chart created (value
// CreatedByValue); a MeshConfig without it existed before the install (FSM's,
// or the operator's) and outlives the uninstall.
const (
	CreatedByAnnotation = "fsm-webhooks.flomesh.io/created-by"
	CreatedByValue      = "fsm-webhooks"
)

// fsmApps are the pods FSM v1.5.1's chart has its webhook Services select:
// its injector (fsm-injector) and its controller (fsm-validator).
var fsmApps = map[string]bool{"fsm-injector": true, "fsm-controller": true}

// deleteConfigurations deletes the mesh's webhook configurations, but for
// one whose Service still selects FSM's pods: after step 1 of a takeover
// (createServices=false) FSM's injector and controller answer through them,
// and FSM's injector writes its configuration only when it starts, so
// deleting it would admit pods without a sidecar until FSM is restarted.
func deleteConfigurations(ctx context.Context, cs kubernetes.Interface, mutating, validating string, log logr.Logger) error {
	adm := cs.AdmissionregistrationV1()
	type configuration struct {
		kind, name string
		refs       []*admissionregistrationv1.ServiceReference
		del        func(metav1.DeleteOptions) error
		uid        types.UID
	}
	var configs []configuration
	// NotFound is done (a retried hook), but said: run by hand with the
	// wrong --mesh-name, the hook deleted nothing and still succeeded.
	m, err := adm.MutatingWebhookConfigurations().Get(ctx, mutating, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading MutatingWebhookConfiguration %s: %w", mutating, err)
	}
	if err != nil {
		log.Info("No webhook configuration to delete", "kind", "MutatingWebhookConfiguration", "name", mutating)
	}
	if err == nil {
		c := configuration{kind: "MutatingWebhookConfiguration", name: mutating, uid: m.UID,
			del: func(o metav1.DeleteOptions) error {
				return adm.MutatingWebhookConfigurations().Delete(ctx, mutating, o)
			}}
		for _, w := range m.Webhooks {
			c.refs = append(c.refs, w.ClientConfig.Service)
		}
		configs = append(configs, c)
	}
	v, err := adm.ValidatingWebhookConfigurations().Get(ctx, validating, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading ValidatingWebhookConfiguration %s: %w", validating, err)
	}
	if err != nil {
		log.Info("No webhook configuration to delete", "kind", "ValidatingWebhookConfiguration", "name", validating)
	}
	if err == nil {
		c := configuration{kind: "ValidatingWebhookConfiguration", name: validating, uid: v.UID,
			del: func(o metav1.DeleteOptions) error {
				return adm.ValidatingWebhookConfigurations().Delete(ctx, validating, o)
			}}
		for _, w := range v.Webhooks {
			c.refs = append(c.refs, w.ClientConfig.Service)
		}
		configs = append(configs, c)
	}
	for _, c := range configs {
		svc, err := fsmServes(ctx, cs, c.refs)
		if err != nil {
			return fmt.Errorf("%s %s: %w", c.kind, c.name, err)
		}
		if svc != "" {
			log.Info("Kept the webhook configuration: its Service selects FSM's pods", "kind", c.kind, "name", c.name, "service", svc)
			continue
		}
		// The UID precondition: never delete one FSM re-created meanwhile.
		if err := c.del(metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &c.uid}}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("deleting %s %s: %w", c.kind, c.name, err)
		}
		log.Info("Deleted the webhook configuration", "kind", c.kind, "name", c.name)
	}
	return nil
}

// fsmServes returns the first of refs that exists and selects FSM's pods.
func fsmServes(ctx context.Context, cs kubernetes.Interface, refs []*admissionregistrationv1.ServiceReference) (string, error) {
	for _, ref := range refs {
		if ref == nil {
			continue
		}
		svc, err := cs.CoreV1().Services(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("reading Service %s/%s: %w", ref.Namespace, ref.Name, err)
		}
		if fsmApps[svc.Spec.Selector["app"]] {
			return ref.Namespace + "/" + ref.Name, nil
		}
	}
	return "", nil
}

// deleteOwnMeshConfig deletes the MeshConfig only when the chart created it,
// guarded by the UID read so that a MeshConfig replaced in between is kept.
func deleteOwnMeshConfig(ctx context.Context, dyn dynamic.Interface, ns, name string, log logr.Logger) error {
	mcs := dyn.Resource(meshConfigGVR).Namespace(ns)
	mc, err := mcs.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		log.Info("No MeshConfig to delete", "meshConfig", ns+"/"+name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading MeshConfig %s/%s: %w", ns, name, err)
	}
	if mc.GetAnnotations()[CreatedByAnnotation] != CreatedByValue {
		log.Info("Kept the MeshConfig: the chart did not create it", "namespace", ns, "name", name, "annotation", CreatedByAnnotation)
		return nil
	}
	uid := mc.GetUID()
	err = mcs.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone, or replaced by another object since the read
	}
	if err != nil {
		return fmt.Errorf("deleting MeshConfig %s/%s: %w", ns, name, err)
	}
	log.Info("Deleted the MeshConfig", "namespace", ns, "name", name)
	return nil
}

// conversionReleased says whether the hook has nothing to undo in the CRD's
// conversion stanza: no webhook, or another mesh's converter's Service (that
// mesh's converter took the stanza over and keeps serving it). A URL stanza
// (out-of-cluster servers) names no namespace and is the mesh's own.
func conversionReleased(c *apiextv1.CustomResourceConversion, ns string) bool {
	if c == nil || c.Strategy != apiextv1.WebhookConverter {
		return true
	}
	if c.Webhook == nil || c.Webhook.ClientConfig == nil || c.Webhook.ClientConfig.Service == nil {
		return false
	}
	return c.Webhook.ClientConfig.Service.Namespace != ns
}

// conversionOurs: the CRD's stanza is this mesh's to release.
func conversionOurs(ctx context.Context, apiext apiextclient.Interface, ns string) (bool, error) {
	crd, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading CRD %s: %w", fsmnames.MeshConfigCRDName, err)
	}
	return !conversionReleased(crd.Spec.Conversion, ns), nil
}

// releaseConversion sets the MeshConfig CRD's conversion strategy to None,
// as FSM's bootstrap does, unless conversionReleased; NotFound is done.
func releaseConversion(ctx context.Context, apiext apiextclient.Interface, ns string, log logr.Logger) error {
	crds := apiext.ApiextensionsV1().CustomResourceDefinitions()
	crd, err := crds.Get(ctx, fsmnames.MeshConfigCRDName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading CRD %s: %w", fsmnames.MeshConfigCRDName, err)
	}
	patch := releasePatch(crd, ns)
	if patch == nil {
		return nil
	}
	_, err = crds.Patch(ctx, fsmnames.MeshConfigCRDName, types.MergePatchType, patch, metav1.PatchOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("setting conversion strategy None on CRD %s: %w", fsmnames.MeshConfigCRDName, err)
	}
	log.Info("Conversion strategy set to None", "crd", fsmnames.MeshConfigCRDName, "takenOutOfFSMsReconciler", fsmReconciles(crd.Labels))
	return nil
}

// fsmReconcileLabel is FSM's constants.ReconcileLabel.
const fsmReconcileLabel = "flomesh.io/reconcile"

// fsmReconciles says whether FSM's CRD reconciler watches a CRD with these
// labels: FSM's bootstrap run with --enable-reconciler labels the CRD
// "true" on start (as in step 1 of a hand-back) and selects
// app.kubernetes.io/name=flomesh.io,flomesh.io/reconcile=true.
func fsmReconciles(l map[string]string) bool {
	return l["app.kubernetes.io/name"] == "flomesh.io" && l[fsmReconcileLabel] == "true"
}

// releasePatch is the merge patch that releases the CRD's conversion
// stanza, nil when there is nothing to do. FSM's reconciler reverts every
// change of a watched CRD's spec, and then its own revert, so once our
// converter has put its stanza back over FSM's None the CRD flips between
// the two for good, a conversion webhook with no converter behind it half
// the time once ours are gone; a None alone is one more flip. The same
// write therefore takes the CRD out of FSM's selection: FSM's informer sees
// it deleted, its pending revert conflicts, its create of it again fails
// (it exists). Also when the stanza reads None (read mid-flip). FSM's
// bootstrap labels it again when it next starts, before its reconciler runs.
func releasePatch(crd *apiextv1.CustomResourceDefinition, ns string) []byte {
	c := crd.Spec.Conversion
	noneAlready := c == nil || c.Strategy != apiextv1.WebhookConverter
	if conversionReleased(c, ns) && !noneAlready {
		return nil // another mesh's converter's stanza
	}
	reconciled := fsmReconciles(crd.Labels)
	if noneAlready && !reconciled {
		return nil
	}
	p := map[string]any{"spec": map[string]any{"conversion": map[string]any{"strategy": "None", "webhook": nil}}}
	if reconciled {
		p["metadata"] = map[string]any{"labels": map[string]any{fsmReconcileLabel: "false"}}
	}
	b, _ := json.Marshal(p)
	return b
}

// scaleToZero scales the servers' Deployment to zero and waits until none of
// its pods is left. Once every pod left is terminating it calls draining at
// each poll (their controllers have stopped; their listeners still serve).
func scaleToZero(ctx context.Context, cs kubernetes.Interface, ns, name string, draining func(context.Context) error, log logr.Logger) error {
	deployments := cs.AppsV1().Deployments(ns)
	d, err := deployments.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// Done for a retried hook; run by hand with the wrong namespace,
		// the servers the hook was to stop are still running elsewhere.
		log.Info("No Deployment of the servers: none stopped (if they run, name their namespace and Deployment)", "deployment", ns+"/"+name)
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading Deployment %s/%s: %w", ns, name, err)
	}
	selector, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		return fmt.Errorf("selector of Deployment %s/%s: %w", ns, name, err)
	}
	patch := []byte(`{"spec":{"replicas":0}}`)
	if _, err := deployments.Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("scaling Deployment %s/%s to zero: %w", ns, name, err)
	}
	log.Info("Scaled the servers to zero; waiting for their pods to go", "deployment", ns+"/"+name)
	// Polled often: the stanza must be released before kube-proxy stops
	// routing to the terminating converter (its iptables sync runs at most
	// once a second), and one hook's List a tenth of a second is cheap.
	var listErr error
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector.String()})
		if err != nil {
			if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) || apierrors.IsNotFound(err) {
				return false, err // no retry changes these
			}
			listErr = err // transient: retry until ctx ends, and say why if it does
			return false, nil
		}
		listErr = nil
		running := stillRunning(pods.Items)
		if len(running) == 0 {
			return true, nil
		}
		if allTerminating(running) {
			if err := draining(ctx); err != nil {
				log.Error(err, "While the servers drain; retrying")
			}
		}
		return false, nil
	})
	if err != nil {
		if listErr != nil {
			err = fmt.Errorf("%w (last pod list: %v)", err, listErr)
		}
		return fmt.Errorf("waiting for the pods of Deployment %s/%s to stop: %w", ns, name, err)
	}
	return nil
}

// stillRunning drops the pods whose containers have all stopped for good
// (phase Failed or Succeeded: an evicted pod, one stopped by a node's
// graceful shutdown). Such a pod stays in the API until the pod garbage
// collector's threshold, and scaling to zero never deletes it (the
// ReplicaSet controller deletes active pods only): waiting for it would
// time the hook out on any cluster with one.
func stillRunning(pods []corev1.Pod) []corev1.Pod {
	var out []corev1.Pod
	for i := range pods {
		if p := pods[i].Status.Phase; p != corev1.PodFailed && p != corev1.PodSucceeded {
			out = append(out, pods[i])
		}
	}
	return out
}

// allTerminating: every pod has been asked to stop.
func allTerminating(pods []corev1.Pod) bool {
	for i := range pods {
		if pods[i].DeletionTimestamp == nil {
			return false
		}
	}
	return true
}
