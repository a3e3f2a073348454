package servingcert_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// TestCheckReissuesOnNameOrCACrtChange: each Secret differs from what the
// spec wants in one way a client would notice (a name it dials, the CA
// published beside the cert); Check must ask for a new cert with the reason
// that says which.
func TestCheckReissuesOnNameOrCACrtChange(t *testing.T) {
	ca := certstest.MustNew(t, certstest.Options{RootValidity: 24 * time.Hour})
	trusted := mustBundle(t, ca)
	withHost := func(host string) servingcert.Spec { s := spec; s.URLHost = host; return s }
	// issueReq issues a cert for the spec's request as changed by edit.
	issueReq := func(s servingcert.Spec, edit func(*certs.Request)) map[string][]byte {
		t.Helper()
		data := certstest.ServingSecretData(t, ca, s)
		req := s.Request()
		edit(&req)
		c, err := ca.Issue(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		data[servingcert.KeyCert], data[servingcert.KeyKey] = c.CertPEM, c.KeyPEM
		return data
	}
	good := certstest.ServingSecretData(t, ca, spec)
	other := certstest.ServingSecretData(t, ca, withHost("other.example"))
	noCA := map[string][]byte{servingcert.KeyCert: good[servingcert.KeyCert], servingcert.KeyKey: good[servingcert.KeyKey]}
	leafInCA := map[string][]byte{
		servingcert.KeyCert: good[servingcert.KeyCert], servingcert.KeyKey: good[servingcert.KeyKey],
		servingcert.KeyCA: append(append([]byte{}, good[servingcert.KeyCA]...), other[servingcert.KeyCert]...),
	}

	for _, tc := range []struct {
		name string
		spec servingcert.Spec
		data map[string][]byte
		want servingcert.Reason
	}{
		{"no ca.crt", spec, noCA, servingcert.ReasonMissing},
		{"ca.crt also holds a leaf", spec, leafInCA, servingcert.ReasonInvalid},
		{"another CN, same DNS names", spec, issueReq(spec, func(r *certs.Request) { r.CommonName = "other.fsm-system.svc" }), servingcert.ReasonNames},
		{"URL host name added", withHost("webhook.example"), good, servingcert.ReasonNames},
		{"URL host name kept", withHost("webhook.example"), certstest.ServingSecretData(t, ca, withHost("webhook.example")), servingcert.ReasonNone},
		{"URL host IP removed", spec, certstest.ServingSecretData(t, ca, withHost("10.0.0.1")), servingcert.ReasonNames},
		{"URL host IP changed", withHost("10.0.0.2"), certstest.ServingSecretData(t, ca, withHost("10.0.0.1")), servingcert.ReasonNames},
		{"URL host IP kept", withHost("10.0.0.1"), certstest.ServingSecretData(t, ca, withHost("10.0.0.1")), servingcert.ReasonNone},
		{"an extra IP", withHost("10.0.0.1"), issueReq(withHost("10.0.0.1"), func(r *certs.Request) {
			r.IPAddresses = append(r.IPAddresses, net.ParseIP("10.0.0.9"))
		}), servingcert.ReasonNames},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := servingcert.Check(tc.spec, tc.data, trusted, time.Now(), 0)
			if v.Reason != tc.want {
				t.Fatalf("Check = %q (%s), want %q", v.Reason, v.Detail, tc.want)
			}
		})
	}
}
