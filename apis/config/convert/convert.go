// Package convert converts MeshConfig JSON between a served version and the
// hub (v1alpha3), as the conversion webhook does and as the validator must
// predict it: the typed conversion of each version's ConvertTo/ConvertFrom,
// and on top of it the exact v1alpha3 JSON an old version's object was read
// from (lossless.AnnotationV1Alpha3JSON), so that an unchanged write through
// an old version stores the v1alpha3 object it read, to the JSON.
package convert

import (
	"encoding/json"
	"fmt"
	"reflect"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/conversion"
	kjson "sigs.k8s.io/json"

	"github.com/flomesh-io/fsm-webhooks/apis/config/lossless"
	"github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
)

// Spoke is a version that converts through the hub.
type Spoke interface {
	conversion.Convertible
	metav1.Object
}

// ToHub converts spoke into hub (an empty hub object, its apiVersion and
// kind set or not) and returns hub's JSON with the exact JSON spoke's AnnotationV1Alpha3JSON records put back
// where spoke still holds what it was read as. The annotation is removed
// from spoke.
func ToHub(spoke Spoke, hub conversion.Hub) ([]byte, error) {
	changes, err := lossless.TakeChanges(spoke)
	if err != nil {
		return nil, err
	}
	gvk := hub.GetObjectKind().GroupVersionKind()
	if err := spoke.ConvertTo(hub); err != nil {
		return nil, err
	}
	hub.GetObjectKind().SetGroupVersionKind(gvk)
	out, err := json.Marshal(hub)
	if err != nil {
		return nil, fmt.Errorf("encoding the hub object: %w", err)
	}
	if len(changes) == 0 {
		return out, nil
	}
	if out, err = changes.Apply(out, v1alpha3.SpecDefaults); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", lossless.AnnotationV1Alpha3JSON, err)
	}
	// What the annotation put back must still be a v1alpha3 object: the
	// apiserver does not validate a converted object before storing it,
	// and one that does not decode fails every read in the other versions.
	if err := kjson.UnmarshalCaseSensitivePreserveInts(out, newEmpty(hub)); err != nil {
		return nil, fmt.Errorf("annotation %s puts back a value the hub version cannot hold: %w", lossless.AnnotationV1Alpha3JSON, err)
	}
	return out, nil
}

// newEmpty is an empty object of hub's type.
func newEmpty(hub conversion.Hub) any {
	return reflect.New(reflect.TypeOf(hub).Elem()).Interface()
}

// FromHub sets spoke (an empty object of its version) to hubJSON, a hub
// object, converted, and records in its AnnotationV1Alpha3JSON where
// converting it back would not give hubJSON's JSON. newHub returns an empty
// hub object. A hub object that is an old version's write stored relabelled
// (conversion strategy None) is first read as the hub object it stands for
// (restoreRelabelled), and that is what the annotations record. If that
// fails (an annotation edited by hand) the object is read as it is, as it
// was before: one object's broken annotation must not fail every read of
// the old versions, a whole list included.
func FromHub(hubJSON []byte, newHub func() conversion.Hub, spoke Spoke) error {
	restored, restoreErr := restoreRelabelled(hubJSON, newHub)
	if restoreErr == nil {
		hubJSON = restored
	}
	hub := newHub()
	if err := kjson.UnmarshalCaseSensitivePreserveInts(hubJSON, hub); err != nil {
		if restoreErr != nil {
			return fmt.Errorf("reading an old version's write stored relabelled as the hub version: %w", restoreErr)
		}
		return fmt.Errorf("decoding the hub object: %w", err)
	}
	if err := spoke.ConvertFrom(hub); err != nil {
		return err
	}
	// A stray copy on the hub object would be read back below.
	if err := lossless.KeepChanges(spoke, nil); err != nil {
		return err
	}
	back, err := ToHub(spoke.DeepCopyObject().(Spoke), newHub())
	if err != nil {
		return fmt.Errorf("converting the result back: %w", err)
	}
	changes, err := lossless.Diff(hubJSON, back, v1alpha3.SpecDefaults)
	if err != nil {
		return err
	}
	return lossless.KeepChanges(spoke, changes)
}
