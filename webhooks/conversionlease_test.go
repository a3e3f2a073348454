package webhooks

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/flomesh-io/fsm-webhooks/fsmnames"
)

func TestConversionOwnerMesh(t *testing.T) {
	for holder, want := range map[string]string{
		"fsm-system/fsm|fsm-webhooks-7d9f-abcde": "fsm-system/fsm",
		"other-system/other|host-x":              "other-system/other",
		"":                                       "",
	} {
		if got := ConversionOwnerMesh(holder); got != want {
			t.Errorf("ConversionOwnerMesh(%q) = %q, want %q", holder, got, want)
		}
	}
}

// testTwoMeshesOneConverter: two meshes' servers convert the same CRD on one
// apiserver. One owns the stanza and it stays put (no caBundle flip-flop);
// when the owner stops, the other takes it over within the lease duration.
func testTwoMeshesOneConverter(t *testing.T) {
	ctx := context.Background()
	apiext, crd := createTwoVersionCRD(ctx, t, "gadget", "Gadget")
	// client-go gives up a lease it cannot renew within renew: 6 s, so a
	// starved CI core seldom hands the stanza over mid-test (the test
	// allows it: a lost renewal is the Lease working).
	lease := leaseTiming{duration: 8 * time.Second, renew: 6 * time.Second, retry: time.Second}

	type mesh struct {
		tc  *testCase
		w   Webhook
		run *running
	}
	var meshes []*mesh
	for _, name := range []string{"mesha", "meshb"} {
		tc, w, s := meshConverter(t, name, crd.Name, lease)
		runCtx, cancel := context.WithCancel(ctx)
		r := &running{Server: s, cancel: cancel, done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.err = s.Start(runCtx)
		}()
		t.Cleanup(func() {
			if r.cancel != nil {
				r.stop(t)
			}
		})
		meshes = append(meshes, &mesh{tc: tc, w: w, run: r})
	}
	// targets says which mesh the stanza points at: its URL port and caBundle.
	targets := func() (*mesh, error) {
		c, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if !conversionComplete(c) || c.Spec.Conversion.Webhook.ClientConfig.URL == nil {
			return nil, errTest("no conversion webhook yet")
		}
		for _, m := range meshes {
			if *c.Spec.Conversion.Webhook.ClientConfig.URL == m.w.endpoint(m.run.opts).url(fsmnames.ConverterPath) &&
				bytes.Equal(ConversionCABundle(c), mustBundle(t, m.tc)) {
				return m, nil
			}
		}
		return nil, errTest("the stanza targets one mesh with another's caBundle: " + *c.Spec.Conversion.Webhook.ClientConfig.URL)
	}
	var owner *mesh
	waitFor(t, 30*time.Second, "one mesh owns the stanza", func() error {
		m, err := targets()
		owner = m
		return err
	})
	// handovers is how often the conversion Lease was taken by a new
	// holder (a clean stop or a lost renewal releases it first).
	handovers := func() int32 {
		m := meshes[0]
		l, err := m.tc.cs.CoordinationV1().Leases(m.run.opts.ConversionLeaseNamespace).Get(ctx, ConversionLeaseName(crd.Name), metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return ptr.Deref(l.Spec.LeaseTransitions, 0)
	}
	crdState := func() (rv string, generation int64) {
		c, err := apiext.ApiextensionsV1().CustomResourceDefinitions().Get(ctx, crd.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return c.ResourceVersion, c.Generation
	}
	// Stable: over three lease durations nobody rewrites the CRD while the
	// Lease stays with its holder. An owner whose renewal a loaded machine
	// holds past the renew deadline (6 s) gives the Lease up, and the
	// other mesh may then rightly take it and repoint the stanza, in one
	// write (a spec change) per handover; converters fighting rewrite it
	// with no handover at all.
	handovers0 := handovers()
	rv, generation := crdState()
	for end := time.Now().Add(3 * lease.duration); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if _, err := targets(); err != nil {
			t.Fatalf("the stanza while both meshes ran: %v", err)
		}
	}
	moved := handovers() - handovers0
	switch gotRV, gotGen := crdState(); {
	case moved == 0 && gotRV != rv:
		t.Errorf("the CRD was rewritten while both meshes ran and the Lease stayed with its holder (resourceVersion %s -> %s): converters are fighting", rv, gotRV)
	case gotGen-generation > int64(moved):
		t.Errorf("the CRD's spec was rewritten %d times over %d handovers of the Lease while both meshes ran: converters are fighting", gotGen-generation, moved)
	}
	if moved > 0 {
		t.Logf("the Lease changed hands %d times while both meshes ran (a renewal held past the renew deadline)", moved)
	}
	// The owner is the mesh the stanza targets, holding the Lease; after a
	// handover the new owner may still be repointing it.
	waitFor(t, settleWithin, "the stanza to target the one mesh that owns it", func() error {
		m, err := targets()
		if err != nil {
			return err
		}
		for _, o := range meshes {
			if owns := o.run.hooks[0].ownsConversion(); owns != (o == m) {
				return fmt.Errorf("the stanza targets %s, mesh %s ownsConversion = %v", m.run.opts.MeshName, o.run.opts.MeshName, owns)
			}
		}
		owner = m
		return nil
	})
	var other *mesh
	for _, m := range meshes {
		if m != owner {
			other = m
		}
	}
	if err := other.run.Ready(ctx); err != nil {
		t.Errorf("the non-owner is not ready although it serves: %v", err)
	}
	// The owner stops: the other takes over within the lease duration
	// (a clean stop releases the Lease; a crash waits for it to expire).
	repairs := caBundleRepairs.WithLabelValues(other.w.Name, CRDConversion.String())
	repairs0 := testutil.ToFloat64(repairs)
	stopped := time.Now()
	owner.run.stop(t)
	owner.run.cancel = nil
	// The stanza moves in one write: never a target with another mesh's
	// caBundle, which fails every conversion's TLS.
	for deadline := time.Now().Add(lease.duration + 2*time.Second); ; time.Sleep(20 * time.Millisecond) {
		m, err := targets()
		if err != nil {
			t.Fatalf("during the takeover: %v", err)
		}
		if m == other {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the other mesh did not take over within %s", lease.duration+2*time.Second)
		}
	}
	t.Logf("took over %s after the owner stopped", time.Since(stopped).Round(time.Millisecond))
	waitFor(t, settleWithin, "the new owner ready", func() error { return other.run.Ready(ctx) })
	// Replacing the stanza another mesh's converter wrote by its Lease
	// restores nothing of this one's: no repair.
	if got := testutil.ToFloat64(repairs) - repairs0; got != 0 {
		t.Errorf("the takeover counted %v caBundle repair(s), want 0", got)
	}
}

// meshConverter is mesh name's converter of crd, not started, with lease
// timing lease.
func meshConverter(t *testing.T, name, crd string, lease leaseTiming) (*testCase, Webhook, *Server) {
	t.Helper()
	tc := newCase(t, name, true)
	opts := tc.options()
	opts.MeshName = name
	w := Webhook{
		Name: "converter", Port: freePort(t), ServiceName: fsmnames.ConverterService, SecretName: fsmnames.ConverterCertSecret,
		Handlers: map[string]http.Handler{fsmnames.ConverterPath: convertHandler()},
		Registration: Registration{Kind: CRDConversion, Name: crd, Path: fsmnames.ConverterPath, Conversion: &apiextv1.CustomResourceConversion{
			Strategy: apiextv1.WebhookConverter, Webhook: &apiextv1.WebhookConversion{ConversionReviewVersions: []string{"v1"}},
		}},
	}
	s, err := New(opts, []Webhook{w})
	if err != nil {
		t.Fatal(err)
	}
	s.leaseTiming = lease
	return tc, w, s
}
