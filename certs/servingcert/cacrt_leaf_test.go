package servingcert_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestCheckRefusesCACrtHoldingTheLeaf: a Secret whose ca.crt was overwritten with
// its own tls.crt (a hand edit, or a tool that writes the leaf as "ca") holds
// no CA at all. The design says the caBundle is "the PEM of every CA that
// currently signs serving certs ..., never the leaf", and the serving layer
// publishes ca.crt into the caBundle for as long as Check keeps the Secret;
// the README says a renewal "when its ca.crt does not verify its
// tls.crt (e.g. edited by hand)". Check must reject it.
func TestCheckRefusesCACrtHoldingTheLeaf(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted := mustBundle(t, ca)
	data := issue(t, ca, spec)
	data[servingcert.KeyCA] = data[servingcert.KeyCert]
	if v := servingcert.Check(spec, data, trusted, time.Now(), 0); v.OK() {
		bundle, err := servingcert.MergeBundles(time.Now(), trusted, data[servingcert.KeyCA])
		if err != nil {
			t.Fatal(err)
		}
		cs, err := certs.ParseCertsPEM(bundle)
		if err != nil {
			t.Fatal(err)
		}
		var in []string
		for _, c := range cs {
			in = append(in, fmt.Sprintf("%s (IsCA %v)", c.Subject.CommonName, c.IsCA))
		}
		t.Errorf("Check keeps a Secret whose ca.crt is its own leaf (no CA); the caBundle built from it holds %v", in)
	}
}
