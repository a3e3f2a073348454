package injector_test

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	flowcontrolv1 "k8s.io/api/flowcontrol/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/injector"
	"github.com/flomesh-io/fsm-webhooks/test/testenv"
)

// TestAPFSaturatedLevelHandsOff: the servers call the apiserver as their
// ServiceAccount in the fsm namespace, which API Priority and Fairness puts
// in FlowSchema service-accounts, priority level workload-low, with every
// workload's ServiceAccount. A pod created by one of those (a workload's
// controller: Argo Workflows, Tekton, a Spark driver) holds a seat of that
// same level while it waits on the injector, so a flood of them can leave
// no seat for the injector's own bootstrap Secret create: APF queues it or
// refuses it with 429 and Retry-After, which client-go retries while the
// seats stay held by the creates waiting on it. That must not refuse or time
// out the pod create (it did, after client-go's 10 retries, with a budget
// longer than the webhook's: "the server has received too many requests"):
// the wait ends at the hand-off budget, the Secret goes to the writer
// controller, the pod is admitted in about that budget, and once it is
// stored (its seat free) the Secret the admission built is written (one
// certificate).
//
// The saturated level is a PriorityLevelConfiguration with one seat and no
// borrowing; a FlowSchema sends
// ServiceAccounts' pod and Secret creates to it. The pod create holds the
// seat; the injector's Secret create is then refused (Reject) or queued
// (Queue, as the suggested levels do).
func TestAPFSaturatedLevelHandsOff(t *testing.T) {
	// 150 seats in all, so that one nominal share is one seat (shares 245
	// for the suggested levels plus 1): ceil(150 × 1 / 246).
	env := testenv.Start(t, testenv.Options{APIServerFlags: map[string]string{
		"max-requests-inflight": "100", "max-mutating-requests-inflight": "50"}})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	e := &e2e{cl: env.Client, cfg: env.Config}
	if err := e.cl.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: fsmNamespace}}); err != nil {
		t.Fatal(err)
	}
	// The injector's identity as serve has it in a cluster, and a
	// workload's controller creating pods as its own ServiceAccount. APF
	// classifies impersonated requests by the impersonated user.
	const injectorSA, creatorNS, creatorSA = "fsm-webhooks-apf", "workloads", "pod-creator"
	createForTest(ctx, t, e.cl, &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "fsm-test-apf"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: injectorSA, Namespace: fsmNamespace},
			{Kind: rbacv1.ServiceAccountKind, Name: creatorSA, Namespace: creatorNS}},
	})
	as := func(ns, name string) *rest.Config {
		c := rest.CopyConfig(env.Config)
		c.Impersonate = rest.ImpersonationConfig{
			UserName: "system:serviceaccount:" + ns + ":" + name,
			Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
		}
		return c
	}
	injectorClient, err := client.New(as(fsmNamespace, injectorSA), client.Options{Scheme: e.cl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	creator, err := client.New(as(creatorNS, creatorSA), client.Options{Scheme: e.cl.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	injectorHTTP, err := rest.HTTPClientFor(as(fsmNamespace, injectorSA))
	if err != nil {
		t.Fatal(err)
	}
	servingCA, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
	if err != nil {
		t.Fatal(err)
	}

	queue := flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeQueue,
		Queuing: &flowcontrolv1.QueuingConfiguration{Queues: 1, HandSize: 1, QueueLengthLimit: 50}}
	for _, tc := range []struct {
		mesh     string
		response flowcontrolv1.LimitResponse
		// budget is --injector-secret-handoff-budget (0: serve's 1 s);
		// within bounds the pod create.
		budget, within time.Duration
	}{
		{mesh: "apf-reject", response: flowcontrolv1.LimitResponse{Type: flowcontrolv1.LimitResponseTypeReject}, within: 8 * time.Second},
		{mesh: "apf-queue", response: queue, within: 8 * time.Second},
		// A budget past the admission's own 15 s (the chart takes any
		// duration): the create waits half of the time left (7.5 s), then
		// is handed off, where the admission ran out of time first and
		// refused the pod.
		{mesh: "apf-long-budget", response: queue, budget: 30 * time.Second, within: 12 * time.Second},
	} {
		t.Run(tc.mesh, func(t *testing.T) {
			level := &flowcontrolv1.PriorityLevelConfiguration{
				ObjectMeta: metav1.ObjectMeta{Name: "fsm-test-" + tc.mesh},
				Spec: flowcontrolv1.PriorityLevelConfigurationSpec{
					Type: flowcontrolv1.PriorityLevelEnablementLimited,
					Limited: &flowcontrolv1.LimitedPriorityLevelConfiguration{
						NominalConcurrencyShares: ptr.To(int32(1)), LendablePercent: ptr.To(int32(0)), BorrowingLimitPercent: ptr.To(int32(0)),
						LimitResponse: tc.response,
					},
				},
			}
			createForTest(ctx, t, e.cl, level)
			// Deleted when the subtest ends: one schema at a time matches.
			createForTest(ctx, t, e.cl, &flowcontrolv1.FlowSchema{
				ObjectMeta: metav1.ObjectMeta{Name: "fsm-test-" + tc.mesh},
				Spec: flowcontrolv1.FlowSchemaSpec{
					PriorityLevelConfiguration: flowcontrolv1.PriorityLevelConfigurationReference{Name: level.Name},
					MatchingPrecedence:         500,
					DistinguisherMethod:        &flowcontrolv1.FlowDistinguisherMethod{Type: flowcontrolv1.FlowDistinguisherMethodByUserType},
					Rules: []flowcontrolv1.PolicyRulesWithSubjects{{
						Subjects: []flowcontrolv1.Subject{{Kind: flowcontrolv1.SubjectKindGroup,
							Group: &flowcontrolv1.GroupSubject{Name: "system:serviceaccounts"}}},
						ResourceRules: []flowcontrolv1.ResourcePolicyRule{{
							Verbs: []string{"create"}, APIGroups: []string{""}, Resources: []string{"secrets", "pods"}, Namespaces: []string{"*"},
						}},
					}},
				},
			})
			// APF takes a new configuration asynchronously: wait until a
			// dry-run Secret create as the injector is put in the level.
			eventually(t, settleWithin, "APF to put the injector's Secret creates in "+level.Name, func() (bool, error) {
				body := `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"apf-probe"}}`
				resp, err := injectorHTTP.Post(env.Config.Host+"/api/v1/namespaces/"+fsmNamespace+"/secrets?dryRun=All", "application/json", strings.NewReader(body))
				if err != nil {
					return false, err
				}
				resp.Body.Close()
				return resp.Header.Get("X-Kubernetes-PF-PriorityLevel-UID") == string(level.UID), nil
			})

			ca, err := certstest.New(ctx, certstest.Options{Algorithm: certs.ECDSAP256})
			if err != nil {
				t.Fatal(err)
			}
			// serve's admission writer.
			h := e.writerReplica(t, ca, tc.mesh, replicaWriter{
				pending: injector.NewPendingSecrets(time.Minute), writer: injector.SecretWriterAdmission, client: injectorClient,
				handoff: injector.SecretHandoff{Budget: tc.budget},
			})
			ns := e.serveMesh(ctx, t, servingCA, tc.mesh, tc.mesh, h)

			slow, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secret_handoffs_total", map[string]string{"reason": "slow"})
			p := pod("web", ns.Name)
			start := time.Now()
			err = creator.Create(ctx, p)
			took := time.Since(start)
			t.Logf("pod create, the injector's Secret create held back by APF: %s, %v", took.Round(time.Millisecond), err)
			if err != nil {
				t.Fatalf("pod create refused while APF holds back the injector's Secret create: %v", err)
			}
			if p.Labels[injector.ProxyUUIDLabel] == "" {
				t.Fatal("pod admitted without injection")
			}
			// The budget and the admission around it.
			if took > tc.within {
				t.Errorf("pod create took %s: the admission waited on APF past the hand-off budget", took)
			}
			if n, _ := counterSum(t, "fsm_webhooks_injector_bootstrap_secret_handoffs_total", map[string]string{"reason": "slow"}); n-slow != 1 {
				t.Errorf("handoffs{reason=slow} rose by %v, want 1", n-slow)
			}
			// APF did hold the Secret create back (refused, or queued and
			// given up on by the client), not merely let it through slowly.
			raw, err := env.Clientset.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
			if err != nil {
				t.Fatal(err)
			}
			rejected := regexp.MustCompile(`(?m)^apiserver_flowcontrol_rejected_requests_total\{[^}]*priority_level="` + level.Name + `"[^}]*\} [1-9]`)
			if !rejected.Match(raw) {
				t.Errorf("no request rejected by APF in %s: the test did not saturate the level", level.Name)
			}

			// Once the pod is stored its create frees the seat, and the
			// writer writes the Secret the admission built.
			s := &corev1.Secret{}
			eventually(t, settleWithin, "the handed-off Secret", func() (bool, error) {
				err := e.cl.Get(ctx, bootstrapSecretKey(p), s)
				if apierrors.IsNotFound(err) {
					return false, nil
				}
				return err == nil, err
			})
			checkBootstrapSecret(ctx, t, ca, tc.mesh, p, s)
			if n := ca.Issued(); n != 1 {
				t.Errorf("%d certificates issued for one pod, want 1", n)
			}
		})
	}
}
