package injector

import (
	"fmt"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// FSM's VirtualMachine (machine.flomesh.io/v1alpha1, plural virtualmachines,
// namespaced; FSM v1.5.1's cmd/fsm-bootstrap/crds): a workload outside the
// cluster whose sidecar FSM's controller configures. FSM's injector admits
// its creates beside pods.
const (
	VirtualMachineGroup    = "machine.flomesh.io"
	VirtualMachineVersion  = "v1alpha1"
	VirtualMachineKind     = "VirtualMachine"
	VirtualMachineResource = "virtualmachines"
)

// VirtualMachineGVK is the kind of an admission request for a VirtualMachine
// (matchPolicy Exact: only the version registered is sent).
var VirtualMachineGVK = metav1.GroupVersionKind{Group: VirtualMachineGroup, Version: VirtualMachineVersion, Kind: VirtualMachineKind}

// VirtualMachine is what the injector reads of FSM's VirtualMachine: its type
// and metadata. FSM's machine types are not vendored; the spec is FSM's and
// is neither decoded nor touched.
type VirtualMachine struct {
	metav1.TypeMeta `json:",inline"`
	// Metadata is nil when the object has none (or null): the patch then
	// adds it rather than a path below it.
	Metadata *metav1.ObjectMeta `json:"metadata,omitempty"`
}

// DecodeVirtualMachine decodes an admission request's object. Keys are
// case-sensitive, as the apiserver reads them: a patch path must name the
// member the apiserver has. The object must say it is a
// machine.flomesh.io/v1alpha1 VirtualMachine, which is how FSM's injector
// tells one from a pod (its own apiVersion and kind, which the apiserver
// always sends for a custom resource).
func DecodeVirtualMachine(raw []byte) (*VirtualMachine, error) {
	vm := &VirtualMachine{}
	if err := utiljson.Unmarshal(raw, vm); err != nil {
		return nil, err
	}
	if want := VirtualMachineGroup + "/" + VirtualMachineVersion; vm.APIVersion != want || vm.Kind != VirtualMachineKind {
		return nil, fmt.Errorf("object has apiVersion %q and kind %q, want %q and %q", vm.APIVersion, vm.Kind, want, VirtualMachineKind)
	}
	return vm, nil
}

// Name is the VirtualMachine's name, else its generateName.
func (vm *VirtualMachine) Name() string {
	if vm.Metadata == nil {
		return ""
	}
	if vm.Metadata.Name != "" {
		return vm.Metadata.Name
	}
	return vm.Metadata.GenerateName
}

func (vm *VirtualMachine) namespace() string {
	if vm.Metadata == nil {
		return ""
	}
	return vm.Metadata.Namespace
}

func (vm *VirtualMachine) annotations() map[string]string {
	if vm.Metadata == nil {
		return nil
	}
	return vm.Metadata.Annotations
}

func (vm *VirtualMachine) ownerReferences() []metav1.OwnerReference {
	if vm.Metadata == nil {
		return nil
	}
	return vm.Metadata.OwnerReferences
}

// DecideVirtualMachineInput is what DecideVirtualMachine looks at.
type DecideVirtualMachineInput struct {
	VM           *VirtualMachine
	Namespace    *corev1.Namespace
	MeshName     string
	FSMNamespace string
}

// DecideVirtualMachine says whether a VirtualMachine gets a sidecar identity:
// the namespace and injection annotation checks of pods (FSM's mustVmInject
// is mustPodInject without hostNetwork, which a VirtualMachine does not
// have). Inject never has Reinject set: a VirtualMachine that already
// carries a uuid gets a new one, as in FSM.
func DecideVirtualMachine(in DecideVirtualMachineInput) Decision {
	return decideAnnotated(in.Namespace, in.VM.annotations(), in.MeshName, in.FSMNamespace)
}

// VirtualMachinePatch labels the VirtualMachine fsm-proxy-uuid=proxyUUID,
// the identity FSM's controller matches its sidecar's certificate with; an
// existing value is replaced, as FSM does. Nothing else changes: FSM's patch
// is the diff between the request's object and FSM's typed VirtualMachine
// re-marshalled (which can also drop fields its types lack and add empty
// ones); ours adds the label only.
func VirtualMachinePatch(vm *VirtualMachine, proxyUUID string) []jsonpatch.Operation {
	labels := map[string]string{ProxyUUIDLabel: proxyUUID}
	switch {
	case vm.Metadata == nil:
		return []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata", map[string]any{"labels": labels})}
	case vm.Metadata.Labels == nil:
		return []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/labels", labels)}
	default:
		// "add" on an existing member replaces its value (RFC 6902 4.1).
		return []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/labels/"+escapePointer(ProxyUUIDLabel), proxyUUID)}
	}
}

// escapePointer escapes a JSON Pointer reference token (RFC 6901 3).
func escapePointer(token string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(token)
}
