package chart_test

import (
	"strings"
	"testing"

	"github.com/flomesh-io/fsm-webhooks/test/chart/charttest"
)

// Helm drops a key whose value is null, and `helm upgrade --reuse-values`
// renders the new templates over the previous release's values, which lack
// every key added to values.yaml since (Helm replaces the new chart's
// defaults with the old ones). Either way the templates see the key absent.
// A key the templates read without a default of their own must then be
// refused by the schema, naming it: rendered, its absence gave a release
// that breaks after a successful `helm upgrade`, with the feature that reads
// it enabled (TestNullValueRendersOrSchemaRefuses renders the defaults only).
func TestNullThatBreaksTheReleaseIsRefused(t *testing.T) {
	vault := "fsm: {certificateProvider: {kind: vault}, vault: {host: vault.example, token: t}}\n"
	rules := "fsm: {webhooks: {monitoring: {prometheusRule: {enabled: true}}}}\n"
	monitor := "fsm: {webhooks: {monitoring: {serviceMonitor: {enabled: true}}}}\n"
	for _, tc := range []struct {
		path    string
		values  string
		renders string // what the absent key rendered before the schema refused it
	}{
		{"fsm.webhooks.monitoring.prometheusRule.injectorOverloadedRatio", rules, "`... > ` with no threshold: PromQL Prometheus refuses (added after releases a --reuse-values upgrade still meets)"},
		{"fsm.webhooks.monitoring.prometheusRule.vaultTokenExpiryHours", rules, "`< 0`: FSMWebhooksVaultTokenExpiring never fires"},
		{"fsm.webhooks.monitoring.prometheusRule.servingCertExpiryDays", rules, "`< 0`: FSMWebhooksServingCertExpiring never fires"},
		{"fsm.webhooks.monitoring.prometheusRule.rootExpiryDays", rules, "`< 0`: FSMWebhooksRootCAExpiring never fires"},
		{"fsm.webhooks.monitoring.prometheusRule.rotationStuckFor", rules, "`for:` empty"},
		{"fsm.webhooks.monitoring.prometheusRule.admissionErrorRatio", rules, "`... > ` with no threshold"},
		{"fsm.webhooks.monitoring.prometheusRule.caBundleRepairsPerHour", rules, "`> 0`: fires on the first repair"},
		{"fsm.webhooks.monitoring.serviceMonitor.interval", monitor, "`interval:` null"},
		{"fsm.webhooks.createServices", "", "no Services: every admission fails (failurePolicy Fail), the configurations kept at uninstall"},
		{"fsm.webhooks.restrictSecretWrites", "", "no Secret write policy: the servers may write every Secret"},
		{"fsm.webhooks.restrictRegistrationWrites", "", "no registration policy"},
		{"fsm.webhooks.kubeAPIQPS", "", "--kube-api-qps= : serve refuses to start"},
		{"fsm.webhooks.controllerKubeAPIQPS", "", "--controller-kube-api-qps= : serve refuses to start"},
		{"fsm.webhooks.injectorNamespaceRate", "", "--injector-namespace-rate= : serve refuses to start"},
		{"fsm.webhooks.injectorSecretHandoffBudget", "", "--injector-secret-handoff-budget= : serve refuses to start"},
		{"fsm.webhooks.bootstrapKeyAlgorithm", "", "--bootstrap-key-algorithm= : serve refuses to start"},
		{"fsm.webhooks.bootstrapSecretWriter", "", "--bootstrap-secret-writer= : serve refuses to start"},
		{"fsm.webhooks.kubeAPIBurst", "", "--kube-api-burst=0"},
		{"fsm.webhooks.controllerKubeAPIBurst", "", "--controller-kube-api-burst=0"},
		{"fsm.webhooks.injectorNamespaceBurst", "", "--injector-namespace-burst=0"},
		{"fsm.webhooks.injectorMaxInFlight", "", "--injector-max-in-flight=0: no overload limit"},
		{"fsm.webhooks.injectorSecretHandoffInFlight", "", "--injector-secret-handoff-in-flight=0"},
		{"fsm.webhooks.keyPoolSize", "", "--key-pool-size=0: no key pool"},
		{"fsm.webhooks.pdbMinAvailable", "fsm: {webhooks: {replicaCount: 3}}\n", "minAvailable: 0"},
		{"fsm.webhook.timeoutSeconds", "", "timeoutSeconds: 0, which the apiserver refuses half-way through the upgrade"},
		{"fsm.bootstrapCertValidityDuration", "", "--bootstrap-cert-validity-duration= : serve refuses to start"},
		{"fsm.vault.port", vault, "--vault-port=0"},
	} {
		t.Run(tc.path, func(t *testing.T) {
			t.Parallel()
			vals := map[string]any{}
			if tc.values != "" {
				var err error
				if vals, err = charttest.Values(tc.values); err != nil {
					t.Fatal(err)
				}
			}
			p := strings.Split(tc.path, ".")
			setNull(vals, p)
			_, err := charttest.Render(ns, vals)
			parent := "/" + strings.Join(p[:len(p)-1], "/")
			want := "missing property '" + p[len(p)-1] + "'"
			if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") ||
				!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "'"+parent) {
				t.Errorf("null %s: want the schema's refusal naming it (%s at %s); it rendered %s (err %v)", tc.path, want, parent, tc.renders, err)
			}
		})
	}
}

// setNull sets the key at path to null in vals, creating the maps above it.
func setNull(vals map[string]any, path []string) {
	m := vals
	for _, k := range path[:len(path)-1] {
		sub, ok := m[k].(map[string]any)
		if !ok {
			sub = map[string]any{}
			m[k] = sub
		}
		m = sub
	}
	m[path[len(path)-1]] = nil
}
