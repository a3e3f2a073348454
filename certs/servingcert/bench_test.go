package servingcert_test

import (
	"context"
	"testing"
	"time"

	"github.com/flomesh-io/fsm-webhooks/certs"
	"github.com/flomesh-io/fsm-webhooks/certs/certstest"
	"github.com/flomesh-io/fsm-webhooks/certs/servingcert"
)

// BenchmarkCheck is the per-reconcile cost of deciding a stored cert is good.
func BenchmarkCheck(b *testing.B) {
	ca, err := newBenchCA()
	if err != nil {
		b.Fatal(err)
	}
	data, trusted := ca.data, ca.trusted
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if v := servingcert.Check(spec, data, trusted, now, 0); !v.OK() {
			b.Fatal(v.Detail)
		}
	}
}

// BenchmarkMergeBundles merges a two-root rotation bundle with the served root.
func BenchmarkMergeBundles(b *testing.B) {
	one, err := newBenchCA()
	if err != nil {
		b.Fatal(err)
	}
	two, err := newBenchCA()
	if err != nil {
		b.Fatal(err)
	}
	both := append(append([]byte{}, one.trusted...), two.trusted...)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := servingcert.MergeBundles(now, both, one.trusted); err != nil {
			b.Fatal(err)
		}
	}
}

type benchCA struct {
	data    map[string][]byte
	trusted []byte
}

func newBenchCA() (*benchCA, error) {
	ca, err := certstest.New(context.Background(), certstest.Options{RootValidity: 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	c, err := ca.Issue(context.Background(), spec.Request())
	if err != nil {
		return nil, err
	}
	trusted, _ := ca.CABundle(context.Background())
	leaf, err := certs.ParseCertsPEM(c.CertPEM)
	if err != nil {
		return nil, err
	}
	root, err := servingcert.IssuingRoots(leaf, trusted, time.Now())
	if err != nil {
		return nil, err
	}
	return &benchCA{data: map[string][]byte{servingcert.KeyCA: root, servingcert.KeyCert: c.CertPEM, servingcert.KeyKey: c.KeyPEM}, trusted: trusted}, nil
}
