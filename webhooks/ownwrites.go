package webhooks

import (
	"bytes"

	admv1 "k8s.io/api/admissionregistration/v1"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

// FieldManager is the field manager of every write the servers of the
// installation in namespace make to a registration object. The apiserver
// records in managedFields which manager last changed each field, so the
// manager of a caBundle says whether one of our servers wrote it (any
// replica, before or after a restart) or someone else did, another
// installation of the same mesh in another namespace included.
func FieldManager(namespace string) string { return legacyFieldManager + "/" + namespace }

// legacyFieldManager is the manager of the writes of releases that set
// none: the apiserver names them after the client's user agent, the
// binary's name. Counted as ours, so that a rolling upgrade from such a
// release counts no repair.
const legacyFieldManager = "fsm-webhooks"

// bundleWriter is who last set a caBundle a write replaces.
type bundleWriter int

const (
	// writerUnknown: no caBundle (emptied, or never set), or no manager
	// recorded for it (managedFields cleared): the object does not say.
	writerUnknown bundleWriter = iota
	// writerOurs: one of our servers.
	writerOurs
	// writerOther: anyone else (helm, a GitOps tool, kubectl, ...).
	writerOther
)

// caBundleWriter says who last set the caBundles of obj that differ from
// desired: writerOther if a manager ours does not accept set one of them
// (by names that manager, for the Event), writerUnknown if one is empty or
// has no manager, else writerOurs.
func caBundleWriter(obj any, desired []byte, ours func(manager string) bool) (w bundleWriter, by string) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return writerUnknown, ""
	}
	w = writerOurs
	for _, f := range caBundleFields(obj) {
		if bytes.Equal(f.bundle, desired) {
			continue
		}
		fw, manager := writerUnknown, ""
		if len(f.bundle) > 0 {
			fw, manager = fieldWriter(m.GetManagedFields(), f.path, ours)
		}
		switch fw {
		case writerOther:
			return writerOther, manager
		case writerUnknown:
			w = writerUnknown
		}
	}
	return w, ""
}

// fieldWriter says who manages path: writerOurs if one of our managers
// does, else writerOther (and its name) if another does. Both at once is a
// value we wrote that someone applied unchanged (server-side apply of the
// live caBundle, as a chart rendering it through lookup does): anyone
// changing it takes it from us.
func fieldWriter(managed []metav1.ManagedFieldsEntry, path fieldpath.Path, ours func(string) bool) (bundleWriter, string) {
	w, other := writerUnknown, ""
	for _, e := range managed {
		if e.FieldsV1 == nil {
			continue
		}
		set := &fieldpath.Set{}
		if err := set.FromJSON(e.FieldsV1.GetRawReader()); err != nil || !set.Has(path) {
			// An entry that does not parse says nothing of the caBundle.
			continue
		}
		if ours(e.Manager) {
			return writerOurs, ""
		}
		w, other = writerOther, e.Manager
	}
	return w, other
}

// caBundleField is one caBundle of a registration object and its path in
// managedFields.
type caBundleField struct {
	path   fieldpath.Path
	bundle []byte
}

// caBundleFields lists the caBundles of obj: one per webhook entry of a
// configuration (the list is keyed by name), the conversion webhook's of a
// CRD.
func caBundleFields(obj any) []caBundleField {
	var out []caBundleField
	entry := func(name string, bundle []byte) {
		out = append(out, caBundleField{
			path:   fieldpath.MakePathOrDie("webhooks", fieldpath.KeyByFields("name", name), "clientConfig", "caBundle"),
			bundle: bundle,
		})
	}
	switch o := obj.(type) {
	case *admv1.MutatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			entry(w.Name, w.ClientConfig.CABundle)
		}
	case *admv1.ValidatingWebhookConfiguration:
		for _, w := range o.Webhooks {
			entry(w.Name, w.ClientConfig.CABundle)
		}
	case *apiextv1.CustomResourceDefinition:
		out = append(out, caBundleField{
			path:   fieldpath.MakePathOrDie("spec", "conversion", "webhook", "clientConfig", "caBundle"),
			bundle: ConversionCABundle(o),
		})
	}
	return out
}

// isRepair says whether writing desired over a registration object repairs
// someone else's change: fsm_webhooks_cabundle_repairs_total, the
// CABundleRepaired Event and the FSMWebhooksCABundleRepairs alert are for
// that, and nothing our own servers write. A caBundle another manager set
// is one, whatever this process saw before (a helm rollback while it was
// down). One our servers set is not: a root rotation's phases, a replica
// whose CA watch lags writing the previous phase's bundle back and the
// others restoring theirs, replicas of a rolling update that trust
// different roots. A caBundle that is missing or has no manager says
// nothing by itself: it is someone else's change only if this hook had
// published a caBundle there (published), as we never write an empty one;
// the first write into a new object or entries is not.
func isRepair(exists bool, writer bundleWriter, published []byte) bool {
	switch {
	case !exists:
		return false
	case writer == writerOther:
		return true
	case writer == writerUnknown:
		return published != nil
	}
	return false
}

// isRevert says whether writing desired puts back the caBundle this hook had
// published (published) after any writer, ours included, changed it. Such
// writes back off (repairWait), repairs or not: two replicas that disagree
// for a while (a lagging CA watch, a rolling update changing the CA) would
// otherwise rewrite the object in a storm.
func isRevert(exists bool, published, desired []byte) bool {
	return exists && published != nil && bytes.Equal(published, desired)
}
