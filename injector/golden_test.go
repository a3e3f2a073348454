package injector

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// goldenCase is one input in testdata/golden/*.in.yaml.
type goldenCase struct {
	// Settings are applied on top of DefaultSettings.
	Settings  json.RawMessage  `json:"settings,omitempty"`
	Namespace corev1.Namespace `json:"namespace,omitempty"`
	Pod       corev1.Pod       `json:"pod"`
}

// goldenOutput is what testdata/golden/*.golden.yaml holds.
type goldenOutput struct {
	PatchOps  int              `json:"patchOps"`
	Bootstrap *BootstrapConfig `json:"bootstrap,omitempty"`
	Pod       *corev1.Pod      `json:"pod"`
}

var testMesh = Mesh{
	Name:             "fsm",
	FSMNamespace:     "fsm-system",
	TrustDomain:      "cluster.local",
	ClusterDomain:    "cluster.local",
	SidecarImage:     DefaultSidecarImage,
	InitImage:        DefaultInitImage,
	HealthcheckImage: DefaultHealthcheckImage,
}

// testControllerService is FSM's controller Service as the reference
// corpus records it.
func testControllerService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: ControllerServiceName},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.200.10", Ports: []corev1.ServicePort{{Name: "pipy-admin-port", Port: 6060}}},
	}
}

// seqUUID returns a deterministic uuid generator for tests.
func seqUUID() func() string {
	n := 0
	return func() string {
		n++
		return fmt.Sprintf("00000000-0000-4000-8000-%012d", n)
	}
}

func monitoredNamespace(name string, ann map[string]string) *corev1.Namespace {
	a := map[string]string{SidecarInjectionAnnotation: "enabled"}
	for k, v := range ann {
		a[k] = v
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Labels:      map[string]string{fsmnames.MonitoredByLabel: "fsm"},
		Annotations: a,
	}}
}

// TestGolden runs every input pod through Decide, Mutate and CreatePatch and
// compares the result with its golden file. REFRESH_GOLDEN=1 rewrites them.
func TestGolden(t *testing.T) {
	refresh := os.Getenv("REFRESH_GOLDEN") == "1"
	inputs, err := filepath.Glob("testdata/golden/*.in.yaml")
	if err != nil || len(inputs) == 0 {
		t.Fatalf("no golden inputs: %v", err)
	}
	used := map[string]bool{}
	for _, in := range inputs {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		goldenPath := filepath.Join("testdata", "golden", name+".golden.yaml")
		used[goldenPath] = true
		t.Run(name, func(t *testing.T) {
			got := runGoldenCase(t, in)
			if refresh {
				if err := os.WriteFile(goldenPath, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenPath)
			if err != nil {
				t.Fatalf("reading golden (run with REFRESH_GOLDEN=1 to create): %v", err)
			}
			if !bytes.Equal(want, got) {
				t.Errorf("%s is stale (REFRESH_GOLDEN=1 rewrites it); got:\n%s", goldenPath, got)
			}
		})
	}
	goldens, _ := filepath.Glob("testdata/golden/*.golden.yaml")
	for _, g := range goldens {
		if !used[g] {
			if refresh {
				if err := os.Remove(g); err != nil {
					t.Error(err)
				}
				continue
			}
			t.Errorf("golden file %s has no input (delete it or run with REFRESH_GOLDEN=1)", g)
		}
	}
}

func runGoldenCase(t *testing.T, path string) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c goldenCase
	if err := yaml.UnmarshalStrict(raw, &c); err != nil {
		t.Fatalf("parsing %s: %v", path, err)
	}
	settings := DefaultSettings()
	if len(c.Settings) > 0 {
		dec := json.NewDecoder(bytes.NewReader(c.Settings))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&settings); err != nil {
			t.Fatalf("settings in %s: %v", path, err)
		}
	}
	ns := monitoredNamespace(c.Pod.Namespace, c.Namespace.Annotations)
	dec := Decide(DecideInput{Pod: &c.Pod, Namespace: ns, MeshName: "fsm", FSMNamespace: "fsm-system"})
	if dec.Err != nil || !dec.Inject {
		t.Fatalf("decision: %+v", dec)
	}
	before := c.Pod.DeepCopy()
	mut, err := Mutate(MutateInput{Pod: &c.Pod, Namespace: ns, Settings: settings, Mesh: testMesh, ProxyUUID: seqUUID()(),
		ControllerService: testControllerService(), Reinject: dec.Reinject})
	if err != nil {
		t.Fatalf("Mutate: %v", err)
	}
	if !equalJSON(t, before, &c.Pod) {
		t.Fatal("Mutate modified its input pod")
	}
	ops, err := CreatePatch(&c.Pod, mut.Pod)
	if err != nil {
		t.Fatalf("CreatePatch: %v", err)
	}
	assertPatchApplies(t, &c.Pod, mut.Pod, ops)
	assertEncodesAsLibrary(t, ops)
	out := goldenOutput{PatchOps: len(ops), Pod: mut.Pod}
	if mut.NeedsSecret {
		out.Bootstrap = &mut.Bootstrap
	}
	b, err := yaml.Marshal(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// assertPatchApplies applies ops to the original pod's JSON and checks the
// result is the mutated pod.
func assertPatchApplies(t *testing.T, orig, mutated *corev1.Pod, ops any) {
	t.Helper()
	origJSON, err := json.Marshal(orig)
	if err != nil {
		t.Fatal(err)
	}
	patchJSON, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatchapply.DecodePatch(patchJSON)
	if err != nil {
		t.Fatalf("decoding patch: %v", err)
	}
	applied, err := p.Apply(origJSON)
	if err != nil {
		t.Fatalf("applying patch %s: %v", patchJSON, err)
	}
	var got corev1.Pod
	if err := json.Unmarshal(applied, &got); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, &got, mutated) {
		want, _ := json.Marshal(mutated)
		t.Fatalf("patched pod differs from the mutated pod:\n got %s\nwant %s", applied, want)
	}
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}
