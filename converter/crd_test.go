package converter

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	apixv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"

	"github.com/flomesh-io/fsm-webhooks/webhooks/reviewhttp"
)

func testCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestDesiredConversion(t *testing.T) {
	ca := testCA(t)
	for _, tc := range []struct {
		name    string
		ep      Endpoint
		wantErr string
		check   func(*testing.T, *apixv1.CustomResourceConversion)
	}{
		{name: "service with default port", ep: Endpoint{ServiceNamespace: "fsm-system", ServiceName: DefaultServiceName, CABundle: ca},
			check: func(t *testing.T, c *apixv1.CustomResourceConversion) {
				s := c.Webhook.ClientConfig.Service
				if c.Strategy != apixv1.WebhookConverter || s.Name != "fsm-bootstrap" || s.Namespace != "fsm-system" || *s.Port != 9443 || *s.Path != "/convert" {
					t.Errorf("%+v %+v", c, s)
				}
				if len(c.Webhook.ConversionReviewVersions) != 1 || c.Webhook.ConversionReviewVersions[0] != "v1" || string(c.Webhook.ClientConfig.CABundle) != string(ca) {
					t.Errorf("review versions %v / caBundle not set", c.Webhook.ConversionReviewVersions)
				}
			}},
		{name: "url", ep: Endpoint{URL: "https://127.0.0.1:9443/convert", CABundle: ca},
			check: func(t *testing.T, c *apixv1.CustomResourceConversion) {
				if *c.Webhook.ClientConfig.URL != "https://127.0.0.1:9443/convert" || c.Webhook.ClientConfig.Service != nil {
					t.Errorf("%+v", c.Webhook.ClientConfig)
				}
			}},
		{name: "both", ep: Endpoint{URL: "https://h/convert", ServiceName: "s", ServiceNamespace: "n", CABundle: ca}, wantErr: "not both"},
		{name: "neither", ep: Endpoint{CABundle: ca}, wantErr: "set a Service or a URL"},
		{name: "http url", ep: Endpoint{URL: "http://h/convert", CABundle: ca}, wantErr: `URL "http://h/convert" must be https`},
		{name: "url with query", ep: Endpoint{URL: "https://h/convert?x=1", CABundle: ca}, wantErr: "without user, query or fragment"},
		{name: "service without namespace", ep: Endpoint{ServiceName: "s", CABundle: ca}, wantErr: "needs a namespace"},
		{name: "port out of range", ep: Endpoint{ServiceName: "s", ServiceNamespace: "n", ServicePort: 70000, CABundle: ca}, wantErr: "70000 must be 1-65535"},
		{name: "empty caBundle", ep: Endpoint{URL: "https://h/convert"}, wantErr: "caBundle is empty"},
		{name: "caBundle without certificates", ep: Endpoint{URL: "https://h/convert", CABundle: []byte("not pem")}, wantErr: "no PEM certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DesiredConversion(tc.ep)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, got)
		})
	}
}

func TestConversionEqual(t *testing.T) {
	ca := testCA(t)
	want, err := DesiredConversion(Endpoint{ServiceNamespace: "n", ServiceName: "s", CABundle: ca})
	if err != nil {
		t.Fatal(err)
	}
	none := &apixv1.CustomResourceConversion{Strategy: apixv1.NoneConverter}
	otherCA := want.DeepCopy()
	otherCA.Webhook.ClientConfig.CABundle = testCA(t)
	otherPort := want.DeepCopy()
	*otherPort.Webhook.ClientConfig.Service.Port = 443
	for _, tc := range []struct {
		name       string
		have, want *apixv1.CustomResourceConversion
		equal      bool
	}{
		{"same", want.DeepCopy(), want, true},
		{"unset vs None", nil, none, true},
		{"None vs webhook", none, want, false},
		{"unset vs webhook", nil, want, false},
		{"other caBundle", otherCA, want, false},
		{"other port", otherPort, want, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := conversionEqual(tc.have, tc.want); got != tc.equal {
				t.Errorf("conversionEqual = %v, want %v", got, tc.equal)
			}
		})
	}
}

func TestProbe(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reviewhttp.NewConversion(NewHandler(meshScheme(t), group, logr.Discard())).ServeHTTP(w, r)
	}))
	defer srv.Close()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	servingCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	ctx := context.Background()

	if err := Probe(ctx, u.Host, "127.0.0.1", servingCA); err != nil {
		t.Errorf("probe against a good converter: %v", err)
	}
	if err := Probe(ctx, u.Host, "127.0.0.1", testCA(t)); err == nil || !strings.Contains(err.Error(), "not reachable with the caBundle") {
		t.Errorf("probe with a caBundle that does not sign the serving cert: %v", err)
	}
	if err := Probe(ctx, u.Host, "fsm-bootstrap.fsm-system.svc", servingCA); err == nil {
		t.Error("probe accepted a serving cert without the Service name")
	}
	broken := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer broken.Close()
	bu, err := url.Parse(broken.URL)
	if err != nil {
		t.Fatal(err)
	}
	brokenCA := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: broken.Certificate().Raw})
	if err := Probe(ctx, bu.Host, "127.0.0.1", brokenCA); err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Errorf("probe against a failing converter: %v", err)
	}
}
