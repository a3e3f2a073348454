// Package certmetrics is the mesh CA's metrics: how long each provider takes
// to issue a certificate, when each trusted root expires and which phase of a
// root rotation the CA is in. The serving certificates' own metrics are the
// webhooks package's (fsm_webhooks_serving_cert_*).
package certmetrics

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/flomesh-io/fsm-webhooks/certs"
)

// Rotation phases as the phase label spells them; PhaseNone is a CA that
// never rotated (or a provider that does not rotate here).
const (
	PhaseNone           = "None"
	PhaseNextRootAdded  = "NextRootAdded"
	PhaseNextRootActive = "NextRootActive"
	PhaseComplete       = "Complete"
)

// Phases is every value of the phase label, in rotation order.
var Phases = []string{PhaseNone, PhaseNextRootAdded, PhaseNextRootActive, PhaseComplete}

var (
	issuance = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "fsm_webhooks_cert_issuance_duration_seconds",
		Help: "Time the mesh CA took to issue a certificate (per-pod bootstrap and serving certificates), by provider (tresor, vault, cert-manager) and result (ok, error).",
		// From a pooled-key tresor signature (~0.1 ms) to a slow Vault or a
		// cert-manager CertificateRequest near the admission deadline.
		Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 20},
	}, []string{"provider", "result"})
	rootExpiryDesc = prometheus.NewDesc("fsm_webhooks_root_ca_expiry_seconds",
		"Seconds until each trusted mesh root CA expires (during a rotation: old and new).", []string{"provider", "subject", "serial"}, nil)
	rootNotAfterDesc = prometheus.NewDesc("fsm_webhooks_root_ca_not_after_timestamp_seconds",
		"Expiry of each trusted mesh root CA as a Unix timestamp.", []string{"provider", "subject", "serial"}, nil)
	rotationPhaseDesc = prometheus.NewDesc("fsm_webhooks_root_rotation_phase",
		"1 for the root rotation phase the mesh CA is in (None, NextRootAdded, NextRootActive, Complete), 0 for the others.", []string{"provider", "phase"}, nil)
	rootReadErrorsDesc = prometheus.NewDesc("fsm_webhooks_root_ca_read_errors_total",
		"Scrapes at which the mesh CA bundle could not be read or parsed.", []string{"provider"}, nil)
)

// roots reports the CA registered by Watch at scrape time, so expiry seconds
// are always current and a rotation step taken by another replica shows at
// once.
var roots = &rootCollector{}

func init() {
	metrics.Registry.MustRegister(issuance, roots)
}

// Result labels of the issuance histogram.
const (
	ResultOK    = "ok"
	ResultError = "error"
)

// ObserveIssuance records one issuance by provider that started at start.
func ObserveIssuance(provider string, start time.Time, err error) {
	result := ResultOK
	if err != nil {
		result = ResultError
	}
	issuance.WithLabelValues(provider, result).Observe(time.Since(start).Seconds())
}

// Instrument returns an Issuer that times every Issue of next. It keeps
// next's certs.BundleNotifier, which consumers look for.
func Instrument(next certs.Issuer) certs.Issuer {
	// Both results exported from the start, the error one at 0: increase()
	// over a series that appears with its first failure misses it.
	for _, r := range []string{ResultOK, ResultError} {
		issuance.WithLabelValues(next.Provider(), r)
	}
	in := instrumented{next}
	if n, ok := next.(certs.BundleNotifier); ok {
		return notifying{in, n}
	}
	return in
}

type instrumented struct{ certs.Issuer }

func (i instrumented) Issue(ctx context.Context, req certs.Request) (*certs.Certificate, error) {
	start := time.Now()
	c, err := i.Issuer.Issue(ctx, req)
	ObserveIssuance(i.Provider(), start, err)
	return c, err
}

type notifying struct {
	instrumented
	n certs.BundleNotifier
}

func (n notifying) OnBundleChange(f func()) (cancel func()) { return n.n.OnBundleChange(f) }

// PhaseFunc reports the CA's root rotation phase (one of Phases) without
// I/O, or "" when the provider does not rotate its root here.
type PhaseFunc func() string

// scrapeTimeout bounds a provider's CA bundle read at scrape time (Vault
// reads it over the network).
const scrapeTimeout = 3 * time.Second

type rootCollector struct {
	mu         sync.Mutex
	issuer     certs.Issuer
	phase      PhaseFunc
	readErrors float64
	now        func() time.Time
}

// Watch makes the root metrics report issuer (and phase, when not nil) until
// the returned stop is called. One CA per process: a later Watch replaces
// an earlier one.
func Watch(issuer certs.Issuer, phase PhaseFunc) (stop func()) {
	roots.mu.Lock()
	defer roots.mu.Unlock()
	roots.issuer, roots.phase = issuer, phase
	return func() {
		roots.mu.Lock()
		defer roots.mu.Unlock()
		if roots.issuer == issuer {
			roots.issuer, roots.phase = nil, nil
		}
	}
}

func (c *rootCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rootExpiryDesc
	ch <- rootNotAfterDesc
	ch <- rotationPhaseDesc
	ch <- rootReadErrorsDesc
}

func (c *rootCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.issuer == nil {
		return
	}
	provider := c.issuer.Provider()
	now := time.Now()
	if c.now != nil {
		now = c.now()
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	bundle, err := c.issuer.CABundle(ctx)
	var parsed []rootInfo
	if err == nil {
		parsed, err = parseRoots(bundle)
	}
	if err != nil {
		c.readErrors++
	}
	for _, r := range parsed {
		ch <- prometheus.MustNewConstMetric(rootExpiryDesc, prometheus.GaugeValue, r.notAfter.Sub(now).Seconds(), provider, r.subject, r.serial)
		ch <- prometheus.MustNewConstMetric(rootNotAfterDesc, prometheus.GaugeValue, float64(r.notAfter.Unix()), provider, r.subject, r.serial)
	}
	ch <- prometheus.MustNewConstMetric(rootReadErrorsDesc, prometheus.CounterValue, c.readErrors, provider)
	if c.phase == nil {
		return
	}
	current := c.phase()
	if current == "" {
		return
	}
	for _, p := range Phases {
		v := 0.0
		if p == current {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(rotationPhaseDesc, prometheus.GaugeValue, v, provider, p)
	}
}

type rootInfo struct {
	subject, serial string
	notAfter        time.Time
}

func parseRoots(bundle []byte) ([]rootInfo, error) {
	cs, err := certs.ParseCertsPEM(bundle)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 {
		return nil, errors.New("empty CA bundle")
	}
	out := make([]rootInfo, 0, len(cs))
	for _, c := range cs {
		out = append(out, rootInfo{subject: c.Subject.String(), serial: c.SerialNumber.Text(16), notAfter: c.NotAfter})
	}
	return out, nil
}
