package chart_test

// Values the schema accepts must render what the apiserver, the kubelet
// and the binary accept, and keep what FSM's values meant. These render
// only, except TestRenderedArgsPassBinaryValidation, which builds the
// binary once and runs its flag validation on the rendered arguments.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

func argValue(t *testing.T, d *unstructured.Unstructured, flag string) (string, bool) {
	t.Helper()
	for _, a := range container(t, d)["args"].([]any) {
		s, ok := a.(string)
		if !ok {
			t.Errorf("container arg %#v is not a string: the apiserver refuses the Deployment", a)
			continue
		}
		if v, ok := strings.CutPrefix(s, "--"+flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// The schema accepts numbers for image tags (anyOf string|number), but a
// values file is decoded into float64 and toString prints large numbers in
// exponent form.
func TestNumericImageTag(t *testing.T) {
	r := mustRender(t, `fsm: {webhooks: {imageTag: 20240101}, sidecar: {image: {tag: 20240101}}}`)
	d := mustFind(t, r, "Deployment", "fsm-webhooks")
	if got, want := container(t, d)["image"], "flomesh/fsm-webhooks:20240101"; got != want {
		t.Errorf("fsm.webhooks.imageTag 20240101: image %q, want %q", got, want)
	}
	if got, _ := argValue(t, d, "sidecar-image"); got != "flomesh/pipy:20240101" {
		t.Errorf("fsm.sidecar.image.tag 20240101: --sidecar-image=%s, want flomesh/pipy:20240101", got)
	}
}

// FSM's certificate documentation (seeds: fsm-certificate-management.md)
// says fsm.certificateProvider.serviceCertValidityDuration takes "1.5h or
// 1h30m"; the binary (time.ParseDuration) and the MeshConfig CRD (a plain
// string) accept both. The schema's pattern takes one unit only.
func TestServiceCertValidityCompoundDuration(t *testing.T) {
	for _, v := range []string{"1h30m", "24h0m0s"} {
		t.Run(v, func(t *testing.T) {
			if _, err := time.ParseDuration(v); err != nil {
				t.Fatalf("not a Go duration: %v", err)
			}
			_, err := charttest.Render(ns, mustValues(t, "fsm: {certificateProvider: {serviceCertValidityDuration: "+v+"}, bootstrapCertValidityDuration: "+v+"}"))
			if err != nil {
				t.Errorf("FSM-documented duration %q refused: %v", v, err)
			}
		})
	}
}

// FSM's smi.validateTrafficTarget=false keeps TrafficTargets out of FSM's
// validator (its registration drops the kind and --validate-traffic-target
// follows it). The chart honours it only with handBack; a takeover keeps
// validating them, so a TrafficTarget FSM accepted (namespace differing from
// spec.destination.namespace) is denied (fsmEnforced) after the switch.
func TestSMIValidateTrafficTargetFalse(t *testing.T) {
	r := mustRender(t, `smi: {validateTrafficTarget: false}`)
	d := mustFind(t, r, "Deployment", "fsm-webhooks")
	vwc := mustFind(t, r, "ValidatingWebhookConfiguration", "fsm-validator-mesh-fsm")
	routed := strings.Contains(mustJSON(t, vwc), "traffictargets")
	flagOff := false
	for _, a := range args(t, d) {
		if a == "--validate-traffic-target=false" {
			flagOff = true
		}
	}
	if routed && !flagOff {
		t.Errorf("smi.validateTrafficTarget=false ignored: traffictargets still routed to the validator and serve runs with --validate-traffic-target (default true); args: %v", args(t, d))
	}
}

func mustJSON(t *testing.T, o *unstructured.Unstructured) string {
	t.Helper()
	b, err := o.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A PodDisruptionBudget whose minAvailable is at least the replica count
// never allows an eviction: `kubectl drain` of a node running a replica
// blocks forever. Such a budget is not rendered (FSM's values, one replica
// with enablePodDisruptionBudget, must still install), and NOTES say why.
func TestPDBAllowsADisruption(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      any // the PodDisruptionBudget's minAvailable; nil: none
		notes     bool
	}{
		{"FSM values: enablePodDisruptionBudget with FSM's replicaCount 1", `fsm: {injector: {replicaCount: 1, enablePodDisruptionBudget: true}}`, nil, true},
		{"pdbMinAvailable equal to replicas", `fsm: {webhooks: {replicaCount: 2, pdbMinAvailable: 2}}`, nil, false},
		{"pdbMinAvailable 100%", `fsm: {webhooks: {pdbMinAvailable: "100%"}}`, nil, false},
		{"pdbMinAvailable 60% of 2 keeps both", `fsm: {webhooks: {pdbMinAvailable: "60%"}}`, nil, false},
		{"pdbMinAvailable 50% of 2", `fsm: {webhooks: {pdbMinAvailable: "50%"}}`, "50%", false},
		{"the default: 1 of 2", `{}`, int64(1), false},
		{"FSM's flag with 3 replicas", `fsm: {injector: {replicaCount: 3, enablePodDisruptionBudget: true}, webhooks: {pdbMinAvailable: 2}}`, int64(2), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.doc)
			pdb := r.Find("PodDisruptionBudget", "fsm-webhooks")
			switch {
			case tc.want == nil && pdb != nil:
				t.Errorf("PodDisruptionBudget rendered with minAvailable %v: no eviction is ever allowed, node drains hang", nested(t, pdb, "spec", "minAvailable"))
			case tc.want != nil && pdb == nil:
				t.Errorf("no PodDisruptionBudget, want minAvailable %v", tc.want)
			case tc.want != nil:
				if got := nested(t, pdb, "spec", "minAvailable"); got != tc.want {
					t.Errorf("minAvailable %v (%T), want %v", got, got, tc.want)
				}
			}
			if got := strings.Contains(r.Notes, "no PodDisruptionBudget was rendered"); got != tc.notes {
				t.Errorf("NOTES tell of the skipped budget: %v, want %v\n%s", got, tc.notes, r.Notes)
			}
		})
	}
}

// README: pod labels are merged "(ours win a conflict; the selector labels
// always stay)". A pod label named like a selector label overrides it in the
// rendered template (last duplicate key wins), and the Deployment no longer
// matches its own pods.
func TestPodLabelsKeepSelector(t *testing.T) {
	for name, doc := range map[string]string{
		"fsm.webhooks.podLabels": `fsm: {webhooks: {podLabels: {app: mesh-webhooks}}}`,
		"fsm.injector.podLabels": `fsm: {injector: {podLabels: {app.kubernetes.io/instance: prod}}}`,
	} {
		t.Run(name, func(t *testing.T) {
			r, err := charttest.Render(ns, mustValues(t, doc))
			if err != nil {
				t.Logf("refused (fine): %v", err)
				return
			}
			d := mustFind(t, r, "Deployment", "fsm-webhooks")
			sel := nested(t, d, "spec", "selector", "matchLabels").(map[string]any)
			labels := nested(t, d, "spec", "template", "metadata", "labels").(map[string]any)
			for k, v := range sel {
				if labels[k] != v {
					t.Errorf("selector %s=%v, pod template label %s=%v: the apiserver refuses the Deployment (selector does not match template labels)", k, v, k, labels[k])
				}
			}
		})
	}
}

// The Deployment merges FSM's fsm.injector.nodeSelector and tolerations
// (README "FSM values"); the pre-delete and pre-upgrade hook Jobs use
// fsm.webhooks.* only, so on a cluster where the control plane runs on a
// tainted pool the hooks land elsewhere or stay Pending (uninstall/upgrade
// time out).
func TestHookJobsScheduleLikeServers(t *testing.T) {
	r := mustRender(t, `
fsm:
  injector:
    nodeSelector: {pool: mesh}
    tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
`)
	d := mustFind(t, r, "Deployment", "fsm-webhooks")
	wantSel := mustJSONAny(t, nested(t, d, "spec", "template", "spec", "nodeSelector"))
	wantTol := mustJSONAny(t, nested(t, d, "spec", "template", "spec", "tolerations"))
	for _, job := range []string{"fsm-webhooks-uninstall", "fsm-webhooks-crd-upgrade"} {
		j := mustFind(t, r, "Job", job)
		spec := nested(t, j, "spec", "template", "spec").(map[string]any)
		if got := mustJSONAny(t, spec["nodeSelector"]); got != wantSel {
			t.Errorf("Job %s nodeSelector %s, Deployment's %s", job, got, wantSel)
		}
		if got := mustJSONAny(t, spec["tolerations"]); got != wantTol {
			t.Errorf("Job %s tolerations %s, Deployment's %s", job, got, wantTol)
		}
	}
}

func mustJSONAny(t *testing.T, v any) string {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{"v": v}}
	b, err := u.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The FSMWebhooksAdmissionErrors summary prints `mul 100 ratio`; sprig's mul
// is integer arithmetic, so the default 0.05 says "More than 0% ...".
func TestAdmissionErrorAlertSummary(t *testing.T) {
	r := mustRender(t, `fsm: {webhooks: {monitoring: {prometheusRule: {enabled: true}}}}`)
	pr := mustFind(t, r, "PrometheusRule", "fsm-webhooks")
	js := mustJSON(t, pr)
	if strings.Contains(js, "More than 0% of") {
		t.Errorf("admissionErrorRatio 0.05 rendered as \"More than 0%% of ... requests fail\"")
	}
}

var (
	servedBinOnce sync.Once
	servedBin     string
	servedBinErr  error
)

func servedBinary(t *testing.T) string {
	t.Helper()
	servedBinOnce.Do(func() {
		dir, err := os.MkdirTemp("", "review-fsm-webhooks")
		if err != nil {
			servedBinErr = err
			return
		}
		servedBin = filepath.Join(dir, "fsm-webhooks")
		cmd := exec.Command("nice", "-n", "19", "go", "build", "-o", servedBin, "github.com/flomesh-io/fsm-webhooks/cmd/fsm-webhooks")
		out, err := cmd.CombinedOutput()
		if err != nil {
			servedBinErr = err
			t.Logf("%s", out)
		}
	})
	if servedBinErr != nil {
		t.Fatalf("building fsm-webhooks: %v", servedBinErr)
	}
	return servedBin
}

// runUntil runs cmd, stops it (stop) once its output holds want, and
// returns that output and cmd's exit.
func runUntil(cmd *exec.Cmd, want string, stop func()) ([]byte, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Start()
	w.Close()
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out.Write(sc.Bytes())
		out.WriteByte('\n')
		if strings.Contains(sc.Text(), want) {
			stop()
		}
	}
	return out.Bytes(), cmd.Wait()
}

// The servers' arguments the chart renders for accepted values must pass
// the binary's flag validation, or the pods crash-loop.
func TestRenderedArgsPassBinaryValidation(t *testing.T) {
	cases := map[string]string{
		// cert-manager external issuers (AWS PCA, Google CAS, step-issuer...)
		// have their own kinds, which certs/certmanager accepts outside
		// group cert-manager.io.
		"cert-manager external issuer": `
fsm:
  certificateProvider: {kind: cert-manager}
  certmanager: {issuerName: pca, issuerKind: AWSPCAClusterIssuer, issuerGroup: awspca.cert-manager.io}
`,
		"the defaults":                    `{}`,
		"smi.validateTrafficTarget false": `smi: {validateTrafficTarget: false}`,
		// cert-manager's own group: the two kinds the binary takes (any
		// other is refused at render time, TestValuesRejected).
		"cert-manager ClusterIssuer": `
fsm:
  certificateProvider: {kind: cert-manager}
  certmanager: {issuerName: mesh-root, issuerKind: ClusterIssuer, issuerGroup: cert-manager.io}
`,
		// A values file decodes every number as a float64, which the
		// template would print as 1e+06 from a million on: the int flags
		// are printed with int64, and the float flags parse either form.
		"numeric flags at their maxima": `
fsm:
  webhooks:
    kubeAPIQPS: 100000
    kubeAPIBurst: 100000
    controllerKubeAPIQPS: 100000
    controllerKubeAPIBurst: 100000
    injectorNamespaceRate: 1000000
    injectorNamespaceBurst: 100000
    injectorMaxInFlight: 100000
    injectorSecretHandoffInFlight: 100000
`,
	}
	// The flags are checked before the cluster is reached: a kubeconfig
	// naming a closed port gets past them, and a usage error exits 2.
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, doc := range cases {
		t.Run(name, func(t *testing.T) {
			r := mustRender(t, doc)
			d := mustFind(t, r, "Deployment", "fsm-webhooks")
			a := append(args(t, d), "--kubeconfig="+kubeconfig)
			bin := servedBinary(t) // built before the clock starts
			// serve is stopped once it names the cluster's address: its
			// flags passed. It does within a second; the minute bounds a
			// hang only (a fixed 20 s run made every case last 20 s, and a
			// start starved past it failed).
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			cmd := exec.CommandContext(ctx, bin, a...)
			cmd.Env = []string{"HOME=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
			out, err := runUntil(cmd, "127.0.0.1:1", cancel)
			var exit *exec.ExitError
			if errors.As(err, &exit) && exit.ExitCode() == 2 {
				t.Errorf("the binary refuses the arguments the chart renders (pods crash-loop):\n%s", out)
			}
			if !strings.Contains(string(out), "127.0.0.1:1") {
				t.Errorf("serve did not get as far as the cluster:\n%s", out)
			}
		})
	}
}

// Hook objects are not part of the release: `helm uninstall` never deletes
// them. The pre-delete hook's ClusterRole (get/list/patch/delete on every
// Secret of the cluster) and its binding are deleted only on success
// (before-hook-creation,hook-succeeded). When the hook fails (timeout,
// unschedulable Job) the documented way out, `helm uninstall --no-hooks`,
// leaves them bound to ServiceAccount <fsm ns>/fsm-webhooks-uninstall for
// good (a namespace deletion removes the ServiceAccount but not the
// ClusterRoleBinding naming it).
func TestHookRBACRemovedOnFailure(t *testing.T) {
	r := mustRender(t, "")
	for _, kind := range []string{"ClusterRole", "ClusterRoleBinding"} {
		o := mustFind(t, r, kind, "fsm-webhooks-uninstall.fsm")
		policy := o.GetAnnotations()["helm.sh/hook-delete-policy"]
		if !strings.Contains(policy, "hook-failed") {
			t.Errorf("%s %s: hook-delete-policy %q: left behind when the pre-delete hook fails", kind, o.GetName(), policy)
		}
	}
}

// The binary reads FSM_<FLAG> for every flag not given, and the kubelet's
// service links name a Service's port FSM_<NAME>_PORT: a Vault Service named
// fsm-vault in the fsm namespace set FSM_VAULT_PORT=tcp://..., and serve
// refused it as --vault-port. No pod of the chart takes service links.
func TestNoServiceLinks(t *testing.T) {
	r := mustRender(t, `{}`)
	n := 0
	for _, o := range append(r.Objects, r.Hooks...) {
		var spec []string
		switch o.GetKind() {
		case "Deployment", "Job":
			spec = []string{"spec", "template", "spec"}
		default:
			continue
		}
		n++
		if v := nested(t, o, append(spec, "enableServiceLinks")...); v != false {
			t.Errorf("%s %s: enableServiceLinks %v, want false", o.GetKind(), o.GetName(), v)
		}
	}
	if n < 3 {
		t.Errorf("checked %d pod templates, want the Deployment and both hook Jobs", n)
	}
}

// helm waits 5m for a hook unless given --timeout; a hook Job allowed
// longer (its timeoutSeconds + 60 of activeDeadlineSeconds) outlives helm's
// wait, and helm fails the uninstall or upgrade while the hook still works.
// NOTES name the --timeout to pass.
func TestNotesNameHookTimeouts(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"defaults fit helm's 5m", `{}`, nil},
		{"uninstall hook 240 s fits", `fsm: {uninstallHook: {timeoutSeconds: 240}}`, nil},
		{"uninstall hook 600 s", `fsm: {uninstallHook: {timeoutSeconds: 600}}`, []string{"helm uninstall --timeout 660s"}},
		{"CRD upgrade hook 900 s", `fsm: {crdUpgrade: {timeoutSeconds: 900}}`, []string{"helm upgrade --timeout 960s"}},
		{"CRD upgrade hook off", `fsm: {crdUpgrade: {enabled: false, timeoutSeconds: 900}}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.doc)
			for _, w := range tc.want {
				if !strings.Contains(r.Notes, w) {
					t.Errorf("NOTES do not say %q:\n%s", w, r.Notes)
				}
			}
			if tc.want == nil && strings.Contains(r.Notes, "--timeout") {
				t.Errorf("NOTES ask for a --timeout the hooks do not need:\n%s", r.Notes)
			}
		})
	}
}

// FSM's certificate docs show `--set fsm.serviceCertValidityDuration=24h`,
// a key FSM's chart ignores. An FSM values file carrying it with the value
// in force installs unchanged (refused when it means another: see
// TestValuesRejected).
func TestFSMDocsTopLevelServiceCertValidity(t *testing.T) {
	for _, values := range []string{
		"fsm: {serviceCertValidityDuration: 24h}",
		"fsm: {serviceCertValidityDuration: 1h30m, certificateProvider: {serviceCertValidityDuration: 1h30m}}",
	} {
		t.Run(values, func(t *testing.T) {
			if _, err := charttest.Render(ns, mustValues(t, values)); err != nil {
				t.Errorf("refused: %v", err)
			}
		})
	}
}
