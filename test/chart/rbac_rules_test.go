package chart_test

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
	"github.com/flomesh-io/fsm-webhooks/webhooks"
)

// serverRule is one rule the chart grants the servers' ServiceAccount
// fsm-webhooks: verbs on resources of an API group, in a Role's namespace
// or cluster-wide, optionally restricted to resourceNames.
type serverRule struct {
	role      string // "ClusterRole/<name>" or "Role/<namespace>/<name>"
	group     string
	resources []string
	names     []string
	verbs     []string
}

// serverRules are the rules `fsm-webhooks serve` needs, each with the code
// path that makes the API call. Informers (controller-runtime's cache and
// client-go's) need list and watch, not get; get is a live GET through a
// direct client or clientset. Patch and update are different verbs: the
// servers update their registrations and the fsm namespace's Secrets, and
// patch only bootstrap Secrets.
func serverRules(mesh string, cm cmIssuer) []serverRule {
	cluster := "ClusterRole/fsm-webhooks-" + mesh
	role := "Role/" + ns + "/fsm-webhooks"
	lease := "Role/" + webhooks.DefaultConversionLeaseNamespace + "/fsm-webhooks-" + mesh + "-conversion-lease"
	rules := []serverRule{
		// Bootstrap Secrets in every injected namespace:
		// create: injector/handler.go (admission writer) and
		// injector/writer.go (controller writer, repair of a missing one);
		// get: injector/handler.go reads one back on reinvocation or a
		// copy of the pod, injector/trustcontroller.go re-reads after a
		// conflict; list, watch: the metadata informer of
		// injector.CacheByObject (orphan sweep), the trust controller's and
		// injector.RetiringRootCheck's label-selected lists (root
		// rotation); patch: injector/trustcontroller.go (TrustPatch after a
		// root rotation); delete: injector/controller.go (with its pod,
		// orphans). Never update.
		{cluster, "", []string{"secrets"}, nil, []string{"create", "delete", "get", "list", "patch", "watch"}},
		// get: injector/writer.go and injector/controller.go read a stored
		// pod live; list, watch: the pod metadata informer and the
		// controller's live list by fsm-proxy-uuid.
		{cluster, "", []string{"pods"}, nil, []string{"get", "list", "watch"}},
		// get: injector/handler.go reads a namespace live when the cache
		// does not know it yet; list, watch: the namespace informers of the
		// injector and the validator.
		{cluster, "", []string{"namespaces"}, nil, []string{"get", "list", "watch"}},
		// list, watch: injector.CachedLimits's informers (the added
		// containers checked against LimitRanges and ResourceQuotas).
		{cluster, "", []string{"limitranges", "resourcequotas"}, nil, []string{"list", "watch"}},
		// client-go's record broadcaster (webhooks/server.go: caBundle
		// repairs) creates and patches (aggregates) core Events.
		{cluster, "", []string{"events"}, nil, []string{"create", "patch"}},
		// The manager's events.k8s.io recorder (injector refusal and
		// MeshConfig events) creates and patches (series) Events.
		{cluster, "events.k8s.io", []string{"events"}, nil, []string{"create", "patch"}},
		// get: webhooks/cabundle.go reads the registration live; list,
		// watch: webhooks/hook.go's informer selects it by metadata.name;
		// update: webhooks/hook.go writes the caBundle (an Update of the
		// object read, no patch, no create in Service mode).
		{cluster, "admissionregistration.k8s.io", []string{"mutatingwebhookconfigurations"},
			[]string{fsmnames.MutatingConfigurationName(mesh)}, []string{"get", "list", "update", "watch"}},
		{cluster, "admissionregistration.k8s.io", []string{"validatingwebhookconfigurations"},
			[]string{fsmnames.ValidatingConfigurationName(mesh)}, []string{"get", "list", "update", "watch"}},
		// The same for the MeshConfig CRD's spec.conversion (the converter;
		// also its takeover from another converter and FSM's).
		{cluster, "apiextensions.k8s.io", []string{"customresourcedefinitions"},
			[]string{fsmnames.MeshConfigCRDName}, []string{"get", "list", "update", "watch"}},
		// get: cmd/fsm-webhooks/issuer.go (servingKeyAlgorithm) reads the
		// MeshConfig live; list, watch: the injector's and the validator's
		// MeshConfig informers.
		{cluster, fsmnames.ConfigGroup, []string{"meshconfigs"}, nil, []string{"get", "list", "watch"}},
		// validator/handler.go lists them from the manager's cache
		// (informers); it never gets one.
		{cluster, "policy.flomesh.io", []string{"ingressbackends", "accesscontrols", "upstreamtrafficsettings", "egressgateways"}, nil,
			[]string{"list", "watch"}},

		// The fsm namespace's Secrets: certs/servingcert (serving
		// certificates: get, create, update; its informer: list, watch),
		// certs/tresor (the root CA fsm-ca-bundle: get, create, update
		// on root rotation; its informer: list, watch), certs/vault (token
		// Secret: get), certs/certmanager (CA bundle Secret: get). No patch.
		{role, "", []string{"secrets"}, nil, []string{"create", "get", "list", "update", "watch"}},
		// validator/probe.go: the readiness probe's dry-run create.
		{role, fsmnames.ConfigGroup, []string{"meshconfigs"}, nil, []string{"create"}},
		// get: webhooks/conversionroute.go reads fsm-bootstrap's ClusterIP;
		// list, watch: the injector's fsm-controller informer
		// (injector.ControllerServiceCacheByObject, local DNS proxy).
		{role, "", []string{"services"}, []string{"fsm-controller", "fsm-bootstrap"}, []string{"get", "list", "watch"}},
		// webhooks/conversionroute.go's label-selected informer.
		{role, "discovery.k8s.io", []string{"endpointslices"}, nil, []string{"list", "watch"}},

		// webhooks/conversionlease.go: client-go's Lease lock creates the
		// conversion-owner Lease, then gets and updates it by name.
		{lease, "coordination.k8s.io", []string{"leases"}, nil, []string{"create"}},
		{lease, "coordination.k8s.io", []string{"leases"}, []string{webhooks.ConversionLeaseName(fsmnames.MeshConfigCRDName)}, []string{"get", "update"}},
	}
	if cm.kind != "" {
		// certs/certmanager: create a CertificateRequest, wait for it
		// with a RetryWatcher from the created resourceVersion (watch, no
		// get), delete it; list: Issuer.Sweep's label-selected list of
		// those a killed replica left behind.
		rules = append(rules, serverRule{role, "cert-manager.io", []string{"certificaterequests"}, nil, []string{"create", "delete", "list", "watch"}})
	}
	// get: certs/certmanager issuerCondition reads the configured
	// cert-manager.io issuer's Ready condition when a request waits on it
	// (an external issuer's kinds are never read).
	switch {
	case cm.group != "cert-manager.io":
	case cm.kind == "Issuer":
		rules = append(rules, serverRule{role, "cert-manager.io", []string{"issuers"}, []string{cm.name}, []string{"get"}})
	case cm.kind == "ClusterIssuer":
		rules = append(rules, serverRule{cluster, "cert-manager.io", []string{"clusterissuers"}, []string{cm.name}, []string{"get"}})
	}
	return rules
}

// cmIssuer is the cert-manager issuer reference of a render (zero: another
// provider).
type cmIssuer struct{ kind, name, group string }

// providerIssuers are the issuer references of providerValues' cert-manager
// renders.
var providerIssuers = map[string]cmIssuer{
	"cert-manager": {"ClusterIssuer", "mesh-root", "cert-manager.io"},
}

func (r serverRule) String() string {
	s := fmt.Sprintf("%s: %q %v", r.role, r.group, r.resources)
	if len(r.names) > 0 {
		s += fmt.Sprintf(" names %v", r.names)
	}
	return s + fmt.Sprintf(" verbs %v", r.verbs)
}

// key identifies a rule by everything but its verbs.
func (r serverRule) key() string {
	return r.role + "|" + r.group + "|" + strings.Join(r.resources, ",") + "|" + strings.Join(r.names, ",")
}

// renderedServerRules are the rules of every Role and ClusterRole the
// rendered chart binds to the servers' ServiceAccount, verbs sorted.
func renderedServerRules(t *testing.T, values string) []serverRule {
	t.Helper()
	r := mustRender(t, values)
	var out []serverRule
	for _, o := range r.All() {
		if o.GetKind() != "RoleBinding" && o.GetKind() != "ClusterRoleBinding" {
			continue
		}
		var b rbacv1.RoleBinding // a ClusterRoleBinding has the same fields
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(o.Object, &b); err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool {
			return s.Kind == "ServiceAccount" && s.Name == "fsm-webhooks" && s.Namespace == ns
		}) {
			continue
		}
		role := mustFind(t, r, b.RoleRef.Kind, b.RoleRef.Name)
		id := "ClusterRole/" + role.GetName()
		if b.RoleRef.Kind == "Role" {
			if role.GetNamespace() != o.GetNamespace() {
				t.Fatalf("%s %s/%s binds Role %s of namespace %q", o.GetKind(), o.GetNamespace(), o.GetName(), role.GetName(), role.GetNamespace())
			}
			id = "Role/" + role.GetNamespace() + "/" + role.GetName()
		}
		var rr rbacv1.ClusterRole // a Role's rules too
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(role.Object, &rr); err != nil {
			t.Fatal(err)
		}
		for _, pr := range rr.Rules {
			if len(pr.APIGroups) != 1 || len(pr.NonResourceURLs) > 0 {
				t.Fatalf("%s: rule %+v: one API group per rule and no non-resource URLs expected", id, pr)
			}
			verbs := slices.Clone(pr.Verbs)
			sort.Strings(verbs)
			out = append(out, serverRule{id, pr.APIGroups[0], pr.Resources, pr.ResourceNames, verbs})
		}
	}
	return out
}

// TestServerRBACIsWhatServeUses: the chart grants the servers'
// ServiceAccount exactly the rules serverRules lists, each for a code path
// that makes the call; a verb added to or removed from any Role or
// ClusterRole bound to it, or a rule or binding added or removed, fails.
// test/chart/install runs the real server under these rules.
func TestServerRBACIsWhatServeUses(t *testing.T) {
	for name, doc := range providerValues {
		t.Run(name, func(t *testing.T) {
			checkServerRules(t, renderedServerRules(t, doc), serverRules("fsm", providerIssuers[name]))
		})
	}
	t.Run("another mesh", func(t *testing.T) {
		checkServerRules(t, renderedServerRules(t, "fsm: {meshName: blue}"), serverRules("blue", cmIssuer{}))
	})
	t.Run("cert-manager Issuer", func(t *testing.T) {
		checkServerRules(t, renderedServerRules(t, "fsm: {certificateProvider: {kind: cert-manager}}"),
			serverRules("fsm", cmIssuer{"Issuer", "fsm-ca", "cert-manager.io"}))
	})
	t.Run("cert-manager external issuer", func(t *testing.T) {
		doc := "fsm: {certificateProvider: {kind: cert-manager}, certmanager: {issuerName: pca, issuerKind: AWSPCAClusterIssuer, issuerGroup: awspca.cert-manager.io}}"
		checkServerRules(t, renderedServerRules(t, doc), serverRules("fsm", cmIssuer{"AWSPCAClusterIssuer", "pca", "awspca.cert-manager.io"}))
	})
}

func checkServerRules(t *testing.T, got, want []serverRule) {
	t.Helper()
	wantByKey := map[string]serverRule{}
	for _, w := range want {
		w.verbs = slices.Sorted(slices.Values(w.verbs))
		wantByKey[w.key()] = w
	}
	seen := map[string]bool{}
	for _, g := range got {
		k := g.key()
		if seen[k] {
			t.Errorf("rule rendered twice: %s", g)
		}
		seen[k] = true
		w, ok := wantByKey[k]
		switch {
		case !ok:
			t.Errorf("rendered rule serve has no use for: %s", g)
		case !slices.Equal(g.verbs, w.verbs):
			t.Errorf("%s: rendered verbs %v, serve uses %v", w.role+" "+fmt.Sprintf("%q %v %v", w.group, w.resources, w.names), g.verbs, w.verbs)
		}
	}
	for k, w := range wantByKey {
		if !seen[k] {
			t.Errorf("rule serve needs is not rendered: %s", w)
		}
	}
}
