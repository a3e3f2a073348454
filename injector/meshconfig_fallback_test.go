package injector

import (
	"context"
	"slices"
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
			mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName}}
			mc.Spec.Sidecar.SidecarImage = "registry.example.com/flomesh/pipy:1.5.12-custom"
			mc.Spec.Traffic.OutboundPortExclusionList = []int32{6379}
			mc.Spec.Certificate.CertKeyBitSize = tc.bits
			mc.Spec.RepoServer.Port = tc.port
			set, rec := cachedSettings(t, mc)
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
			checkFellBackEvent(t, events, tc.wantEvent)
		})
	}
}

// TestMeshConfigRangesReadAsIPTablesReadsThem: FSM v1.5.1 writes the
// MeshConfig's range lists into its iptables rules unparsed
// (pkg/injector/iptables.go GenerateIptablesCommands), so a bare address or
// a dotted netmask worked in a mesh FSM ran. Each is read as the CIDR
// iptables reads it (test/meshimages runs the real iptables over the same
// forms), with a Warning Event, and the rest of the MeshConfig applies. A
// form iptables refuses still rejects the MeshConfig: under FSM no pod of
// the mesh got past its init container with it.
func TestMeshConfigRangesReadAsIPTablesReadsThem(t *testing.T) {
	for _, tc := range []struct {
		name             string
		excl, incl       []string
		wantExcl         []string
		wantIncl         []string
		wantRules        []string
		wantEvent        []string
		wantRejectedFrom string // "" = applied
		wantRejectText   string
	}{
		{
			name:      "bare address and dotted masks",
			excl:      []string{"169.254.169.254", "10.0.0.0/255.0.0.0", "fd00::/8"},
			incl:      []string{"10.96.0.0/255.240.0.0"},
			wantExcl:  []string{"169.254.169.254/32", "10.0.0.0/8", "fd00::/8"},
			wantIncl:  []string{"10.96.0.0/12"},
			wantRules: []string{"-A FSM_PROXY_OUTBOUND -d 169.254.169.254/32 -j RETURN", "-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN", "-A FSM_PROXY_OUTBOUND -d 10.96.0.0/12 -j FSM_PROXY_OUT_REDIRECT"},
			wantEvent: []string{
				`spec.traffic.outboundIPRangeExclusionList[0] "169.254.169.254" is read as 169.254.169.254/32, as FSM's iptables reads it`,
				`spec.traffic.outboundIPRangeExclusionList[1] "10.0.0.0/255.0.0.0" is read as 10.0.0.0/8`,
				`spec.traffic.outboundIPRangeInclusionList[0] "10.96.0.0/255.240.0.0" is read as 10.96.0.0/12`,
			},
		},
		{
			name:      "spaces around a CIDR",
			excl:      []string{" 192.168.0.0/16 "},
			wantExcl:  []string{"192.168.0.0/16"},
			wantRules: []string{"-A FSM_PROXY_OUTBOUND -d 192.168.0.0/16 -j RETURN"},
			wantEvent: []string{`spec.traffic.outboundIPRangeExclusionList[0] " 192.168.0.0/16 " is read as 192.168.0.0/16`},
		},
		{
			name:      "a comma-joined entry",
			excl:      []string{"10.0.0.0/8,192.168.1.1"},
			wantExcl:  []string{"10.0.0.0/8", "192.168.1.1/32"},
			wantRules: []string{"-A FSM_PROXY_OUTBOUND -d 10.0.0.0/8 -j RETURN", "-A FSM_PROXY_OUTBOUND -d 192.168.1.1/32 -j RETURN"},
			wantEvent: []string{`spec.traffic.outboundIPRangeExclusionList[0] "10.0.0.0/8,192.168.1.1" is read as 10.0.0.0/8, 192.168.1.1/32`},
		},
		{name: "CIDRs as they are: no Event", excl: []string{"10.1.2.3/8"}, wantExcl: []string{"10.1.2.3/8"}, wantRules: []string{"-d 10.1.2.3/8 -j RETURN"}},
		{name: "a zero-padded prefix iptables refuses", excl: []string{"10.0.0.0/08"}, wantRejectedFrom: "spec.traffic.outboundIPRangeExclusionList"},
		{
			name: "refused after a comma-joined entry: named at its own index", excl: []string{"10.0.0.0/8,10.1.0.0/16", "10.0.0.0/08"},
			wantRejectedFrom: "spec.traffic.outboundIPRangeExclusionList",
			wantRejectText:   `spec.traffic.outboundIPRangeExclusionList[1]: Invalid value: "10.0.0.0/08"`,
		},
		{name: "an IPv6 inclusion", incl: []string{"fd00::/8"}, wantRejectedFrom: "spec.traffic.outboundIPRangeInclusionList"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := &configv1alpha3.MeshConfig{ObjectMeta: metav1.ObjectMeta{Namespace: "fsm-system", Name: fsmnames.MeshConfigName, ResourceVersion: "7"}}
			mc.Spec.Sidecar.SidecarImage = "registry.example.com/flomesh/pipy:1.5.12-custom"
			mc.Spec.Traffic.OutboundIPRangeExclusionList = tc.excl
			mc.Spec.Traffic.OutboundIPRangeInclusionList = tc.incl
			set, rec := cachedSettings(t, mc)
			events := rec.take()
			if tc.wantRejectedFrom != "" {
				if got := rejectedGauge(t); !slices.Equal(got, []string{tc.wantRejectedFrom}) {
					t.Errorf("rejected fields %v, want [%s]", got, tc.wantRejectedFrom)
				}
				if set.SidecarImage == mc.Spec.Sidecar.SidecarImage {
					t.Errorf("the rejected MeshConfig's sidecar image is used")
				}
				// One Event: a value read as FSM reads it is not reported for
				// a MeshConfig that does not apply.
				if len(events) != 1 || !strings.HasPrefix(events[0], "Warning "+EventMeshConfigRejected+" ") || !strings.Contains(events[0], tc.wantRejectText) {
					t.Errorf("Events %q, want one Warning %s saying %q", events, EventMeshConfigRejected, tc.wantRejectText)
				}
				return
			}
			if got := rejectedGauge(t); len(got) != 0 {
				t.Errorf("fsm_webhooks_injector_meshconfig_rejected set for %v", got)
			}
			if !slices.Equal(set.OutboundIPRangeExclusionList, tc.wantExcl) || !slices.Equal(set.OutboundIPRangeInclusionList, tc.wantIncl) {
				t.Errorf("exclusions %q, inclusions %q; want %q and %q", set.OutboundIPRangeExclusionList, set.OutboundIPRangeInclusionList, tc.wantExcl, tc.wantIncl)
			}
			mut, err := Mutate(MutateInput{Pod: simplePod(nil), Namespace: monitoredNamespace("app", nil), Settings: set, Mesh: testMesh, ProxyUUID: "u-1"})
			if err != nil {
				t.Fatal(err)
			}
			script := ""
			for _, c := range mut.Pod.Spec.InitContainers {
				if c.Name == InitContainerName {
					script = strings.Join(c.Args, " ")
				}
			}
			for _, r := range tc.wantRules {
				if !strings.Contains(script, r+"\n") {
					t.Errorf("fsm-init's rules lack %q:\n%s", r, script)
				}
			}
			checkFellBackEvent(t, events, tc.wantEvent)
		})
	}
}

// cachedSettings reads mc through a CachedMeshConfig, as the injector does,
// recording its Events.
func cachedSettings(t *testing.T, mc *configv1alpha3.MeshConfig) (Settings, *noteRecorder) {
	t.Helper()
	s := runtime.NewScheme()
	if err := configv1alpha3.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	rec := &noteRecorder{}
	src := &CachedMeshConfig{Reader: fake.NewClientBuilder().WithScheme(s).WithObjects(mc).Build(), Namespace: "fsm-system", Logger: testr.New(t), Recorder: rec}
	set, err := src.Settings(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return set, rec
}

// checkFellBackEvent: no Event when want is empty, else one Warning
// MeshConfigValueReplaced saying each of want.
func checkFellBackEvent(t *testing.T, events, want []string) {
	t.Helper()
	if len(want) == 0 {
		if len(events) != 0 {
			t.Errorf("Events %q, want none", events)
		}
		return
	}
	if len(events) != 1 || !strings.HasPrefix(events[0], "Warning "+EventMeshConfigFellBack+" ") {
		t.Fatalf("Events %q, want one Warning %s", events, EventMeshConfigFellBack)
	}
	for _, w := range want {
		if !strings.Contains(events[0], w) {
			t.Errorf("Event %q does not say %q", events[0], w)
		}
	}
}
