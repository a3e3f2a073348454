package injector

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	configv1alpha3 "github.com/flomesh-io/fsm-webhooks/apis/config/v1alpha3"
	"github.com/flomesh-io/fsm-webhooks/injector/iptables"
	"github.com/flomesh-io/fsm-webhooks/validator/meshconfig"
)

// FuzzMeshConfigAcceptedInjects is the property behind the validator and the
// injector sharing package meshconfig/rules: whatever MeshConfig the
// validator admits, the injector's adapter (SettingsFromMeshConfig) and
// Mutate inject a pod with it, never refusing it with a MeshConfig error.
// The fuzzer varies every field the injector turns into part of the pod,
// starting from FSM's preset; it is seeded with the two values of the report
// that broke injection ([fd00::/8] and certKeyBitSize 2560). An admitted
// MeshConfig also yields FSM's IPv4-only fsm-init script: IPv6 exclusions
// are no-ops and IPv6 inclusions are refused, so no IPv6 range reaches it.
func FuzzMeshConfigAcceptedInjects(f *testing.F) {
	preset := loadPreset(f)
	for _, s := range append(acceptedSpecs, refusedSpecs...) {
		f.Add(s.exclusions, s.inclusions, s.outPorts, s.inPorts, s.ifaces, s.keyBits, s.logLevel, s.proxyMode, s.interception, s.cpuLimit, s.cpuRequest, s.extName, s.repoAddr)
	}
	f.Fuzz(func(t *testing.T, exclusions, inclusions, outPorts, inPorts, ifaces string, keyBits int,
		logLevel, proxyMode, interception, cpuLimit, cpuRequest, extName, repoAddr string) {
		acceptedInjects(t, preset, specInput{exclusions, inclusions, outPorts, inPorts, ifaces, keyBits, logLevel, proxyMode, interception, cpuLimit, cpuRequest, extName, repoAddr})
	})
}

// specInput is the part of a MeshConfig spec the property varies: lists are
// comma-separated, "" and 0 leave the preset's value.
type specInput struct {
	exclusions, inclusions, outPorts, inPorts, ifaces string
	keyBits                                           int
	logLevel, proxyMode, interception                 string
	cpuLimit, cpuRequest, extName, repoAddr           string
}

var (
	// acceptedSpecs must pass the validator (and then inject).
	acceptedSpecs = []specInput{
		{exclusions: "fd00::/8"}, // the report, first value
		{keyBits: 2560},          // the report, second value
		{exclusions: "10.0.0.0/8,fd00::/8", inclusions: "192.168.0.0/16,172.16.0.0/12", outPorts: "6379,65535", inPorts: "9090", ifaces: "eth1,veth+", keyBits: 4096,
			logLevel: "debug", proxyMode: "PodIP", interception: "PodLevel", cpuLimit: "2", cpuRequest: "100m", extName: "example.com/dev"},
		{exclusions: "::/0,2001:db8::/32", inclusions: "10.96.0.0/12"},
		{exclusions: "fd00::/8", keyBits: 3333, interception: "NodeLevel"},
		{repoAddr: "Repo.Example.com"},
		{repoAddr: "fd00::10"},
		{repoAddr: "[fd00::10]"}, // as FSM's own URLs need it
	}
	// refusedSpecs must be refused by the validator.
	refusedSpecs = []specInput{
		{exclusions: "fd00::/129", ifaces: "eth0 -j ACCEPT", keyBits: 1024, cpuLimit: "100m", cpuRequest: "1"},
		{ifaces: "sixteen-bytes-xx,..,e$x", outPorts: "0,70000", logLevel: "verbose", proxyMode: "podip", extName: "gpu"},
		{keyBits: 4097, cpuLimit: "-1", extName: "kubernetes.io/x"},
		{repoAddr: "repo server"},
		{repoAddr: "fe80::1%eth0"}, // no URL carries a zone unescaped
		// The sidecar listens on IPv4 only: IPv6 cannot be intercepted.
		{inclusions: "10.96.0.0/12,fd00:10:96::/112"},
		{inclusions: "::/0", interception: "NodeLevel"},
		// IPv4-mapped ranges travel as IPv4: written as IPv6 they would mislead.
		{exclusions: "::ffff:10.0.0.0/104"},
	}
)

func loadPreset(t testing.TB) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "apis", "config", "v1alpha3", "testdata", "fsm-preset-meshconfig.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	preset, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	return preset
}

// TestReportedMeshConfigsInject pins the seeds: the reported values (and the
// other accepted seeds) are admitted and injected, the refused ones refused,
// so the property above is not vacuously true.
func TestReportedMeshConfigsInject(t *testing.T) {
	preset := loadPreset(t)
	for i, in := range acceptedSpecs {
		if !acceptedInjects(t, preset, in) {
			t.Errorf("accepted seed %d %+v: refused by the validator", i, in)
		}
	}
	for i, in := range refusedSpecs {
		if acceptedInjects(t, preset, in) {
			t.Errorf("refused seed %d %+v: admitted by the validator", i, in)
		}
	}
}

// acceptedInjects builds the MeshConfig in from FSM's preset, validates it
// as the validator webhook does and, when admitted, injects a pod with it,
// failing t on any MeshConfig error. It reports whether it was admitted.
func acceptedInjects(t *testing.T, preset []byte, in specInput) bool {
	t.Helper()
	var obj map[string]any
	if err := json.Unmarshal(preset, &obj); err != nil {
		t.Fatal(err)
	}
	spec := obj["spec"].(map[string]any)
	sidecar, traffic := spec["sidecar"].(map[string]any), spec["traffic"].(map[string]any)
	traffic["outboundIPRangeExclusionList"] = list(in.exclusions)
	traffic["outboundIPRangeInclusionList"] = list(in.inclusions)
	traffic["outboundPortExclusionList"] = numbers(in.outPorts)
	traffic["inboundPortExclusionList"] = numbers(in.inPorts)
	traffic["networkInterfaceExclusionList"] = list(in.ifaces)
	if in.keyBits != 0 {
		spec["certificate"].(map[string]any)["certKeyBitSize"] = in.keyBits
	}
	setIf(sidecar, "logLevel", in.logLevel)
	setIf(sidecar, "localProxyMode", in.proxyMode)
	setIf(traffic, "interceptionMode", in.interception)
	setIf(spec["repoServer"].(map[string]any), "ipaddr", in.repoAddr)
	res := map[string]any{}
	limits, requests := map[string]any{}, map[string]any{}
	setIf(limits, "cpu", in.cpuLimit)
	setIf(requests, "cpu", in.cpuRequest)
	if in.extName != "" {
		limits[in.extName], requests[in.extName] = "1", "1"
	}
	res["limits"], res["requests"] = limits, requests
	sidecar["resources"] = res
	doc, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}

	if r := meshconfig.Validate(meshconfig.V1alpha3, doc); len(r.Errors) > 0 {
		return false // refused with a field error: nothing reaches the injector
	}
	mc := &configv1alpha3.MeshConfig{}
	if err := json.Unmarshal(doc, mc); err != nil {
		t.Fatalf("the validator admitted a MeshConfig the API type cannot hold (%v):\n%s", err, doc)
	}
	s := SettingsFromMeshConfig(mc)
	// FSM's key choice, so certKeyBitSize reaches the certificate request.
	mesh := testMesh
	mesh.BootstrapKeyAlgorithm = BootstrapKeyFromMeshConfig
	mut, err := mutateWith(t, simplePod(nil), nil, s, mesh)
	if err != nil {
		t.Fatalf("the validator admitted a MeshConfig the injector refuses: %v\n%s", err, doc)
	}
	if s.InterceptionMode == InterceptionNodeLevel {
		return true
	}
	if in.keyBits != 0 && mut.KeyAlgorithm.RSABits() != in.keyBits {
		t.Errorf("certKeyBitSize %d issued as %q", in.keyBits, mut.KeyAlgorithm)
	}
	script := ""
	for _, c := range mut.Pod.Spec.InitContainers {
		if c.Name == InitContainerName {
			script = c.Args[len(c.Args)-1]
		}
	}
	// localProxyMode PodIP: one shell line first picks the pod's IPv4
	// address for the DNAT (iptables.Script).
	if s.LocalProxyMode == LocalProxyModePodIP {
		if first, rest, ok := strings.Cut(script, "\n"); ok && strings.HasPrefix(first, "ips=${POD_IPS:-$POD_IP}; ") {
			script = rest
		}
	}
	// FSM's script: one IPv4 rule set, holding every IPv4 range and no IPv6
	// one (interface names cannot hold ':').
	if !strings.HasPrefix(script, "iptables-restore --noflush <<EOF\n*nat\n") || strings.Count(script, "<<EOF") != 1 ||
		strings.Contains(script, "ip6tables") || strings.Contains(script, "::") {
		t.Errorf("fsm-init script is not FSM's IPv4 rule set:\n%s", script)
	}
	for _, r := range s.OutboundIPRangeExclusionList {
		if pfx, err := netip.ParsePrefix(r); err == nil && pfx.Addr().Is4() && !strings.Contains(script, "-d "+r+" -j RETURN\n") {
			t.Errorf("IPv4 exclusion %s not in the fsm-init script:\n%s", r, script)
		}
	}
	for _, r := range s.OutboundIPRangeInclusionList {
		if !strings.Contains(script, "-d "+r+" -j "+iptables.OutboundRedirectChain+"\n") {
			t.Errorf("inclusion %s not in the fsm-init script:\n%s", r, script)
		}
	}
	return true
}

// list splits a comma list; "" is the empty list.
func list(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(s, ",")
}

// numbers is a comma list as JSON numbers where an element is an integer
// (as the apiserver's schema guarantees), as a string otherwise.
func numbers(s string) []any {
	out := []any{}
	for _, v := range list(s) {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			out = append(out, n)
		} else {
			out = append(out, v)
		}
	}
	return out
}

func setIf(m map[string]any, key, v string) {
	if v != "" {
		m[key] = v
	}
}
