package injector

import (
	"context"
	"strings"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

// TestMeshConfigValuesReadAsFSMReadsThem: two fields FSM v1.5.1 reads with a
// fallback instead of failing, and whose CRD sets no bound, so a mesh FSM
// ran can have them stored: spec.certificate.certKeyBitSize outside
// 2048-4096 (pkg/configurator GetCertKeyBitSize: logged, 2048 used) and a
// negative spec.repoServer.port (GetProxyServerPort: 6060). Read the same
// way, the rest of the MeshConfig (sidecar image, exclusions...) still
// applies to injected pods, and the replacement is reported in a Warning
// Event; rejecting the whole MeshConfig would silently drop every setting
// of the mesh at the switch. (Found by a review against FSM's source.)
func TestMeshConfigValuesReadAsFSMReadsThem(t *testing.T) {
	for _, tc := range []struct {
		name      string
		bits      int
		port      int32
		wantBits  int
		wantPort  int
		wantEvent []string
	}{
		{"certKeyBitSize 1024", 1024, 0, 2048, DefaultRepoServerPort, []string{"spec.certificate.certKeyBitSize 1024 is outside 2048-4096: 2048 is used, as FSM does"}},
		{"certKeyBitSize 8192", 8192, 0, 2048, DefaultRepoServerPort, []string{"certKeyBitSize 8192"}},
		{"repoServer.port -1", 0, -1, 0, DefaultRepoServerPort, []string{"spec.repoServer.port -1 is not a port: 6060 is used, as FSM does"}},
		{"both", 512, -6060, 2048, DefaultRepoServerPort, []string{"certKeyBitSize 512", "repoServer.port -6060"}},
		{"in range: no Event", 3072, 7070, 3072, 7070, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := runtime.NewScheme()
			if err := configv1alpha3.AddToScheme(s); err != nil {
				t.Fatal(err)
			}
			mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
			mc.Spec.Sidecar.SidecarImage = "registry.example.com/flomesh/pipy:1.5.12-custom"
			mc.Spec.Traffic.OutboundPortExclusionList = []int32{6379}
			mc.Spec.Certificate.CertKeyBitSize = tc.bits
			mc.Spec.RepoServer.Port = tc.port
			rec := &noteRecorder{}
			src := &CachedMeshConfig{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(mc).Build(), Namespace: "fsm-system", Logger: testr.New(t), Recorder: rec}
			set, err := src.Settings(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if set.CertKeyBitSize != tc.wantBits || set.RepoServerPort != tc.wantPort {
				t.Errorf("certKeyBitSize %d, repo port %d; want %d and %d", set.CertKeyBitSize, set.RepoServerPort, tc.wantBits, tc.wantPort)
			}
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: set, Mesh: testMesh, ProxyUUID: "u-1"})
			if err != nil {
				t.Fatal(err)
			}
			image := ""
			for _, c := range mut.Pod.Spec.Containers {
				if c.Name == SidecarContainerName {
					image = c.Image
				}
			}
			if image != mc.Spec.Sidecar.SidecarImage || len(set.OutboundPortExclusionList) != 1 {
				t.Errorf("sidecar image %q, outboundPortExclusionList %v: the rest of the MeshConfig must still apply (FSM applies it)", image, set.OutboundPortExclusionList)
			}
			if got := rejectedGauge(t); len(got) != 0 {
				t.Errorf("fsm_webhooks_injector_meshconfig_rejected set for %v: nothing was rejected", got)
			}
			events := rec.take()
			if len(tc.wantEvent) == 0 {
				if len(events) != 0 {
					t.Errorf("Events %q, want none", events)
				}
				return
			}
			if len(events) != 1 || !strings.HasPrefix(events[0], "Warning "+EventMeshConfigFellBack+" ") {
				t.Fatalf("Events %q, want one Warning %s", events, EventMeshConfigFellBack)
			}
			for _, w := range tc.wantEvent {
				if !strings.Contains(events[0], w) {
					t.Errorf("Event %q does not say %q", events[0], w)
				}
			}
		})
	}
}
