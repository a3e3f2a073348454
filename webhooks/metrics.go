package webhooks

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// The serving cert and registration metrics, by webhook; request counts and
// latency are reviewhttp's (fsm_webhooks_requests_total and friends), with
// the same webhook label.
var (
	renewals = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_serving_cert_renewals_total",
		Help: "Serving certificates written by this process, by webhook and reason (missing, expiring, ca-changed, ...).",
	}, []string{"webhook", "reason"})
	caBundleRepairs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "fsm_webhooks_cabundle_repairs_total",
		Help: "caBundle (or conversion stanza) writes that replaced a caBundle something other than the fsm-webhooks servers set (by its field manager), by webhook and kind; no write of any replica (a root rotation, a lagging replica) is counted.",
	}, []string{"webhook", "kind"})
	expiryDesc = prometheus.NewDesc("fsm_webhooks_serving_cert_expiry_seconds",
		"Seconds until the served certificate expires.", []string{"webhook", "secret"}, nil)
	notAfterDesc = prometheus.NewDesc("fsm_webhooks_serving_cert_not_after_timestamp_seconds",
		"Expiry of the served certificate as a Unix timestamp.", []string{"webhook", "secret"}, nil)
	lifetimeDesc = prometheus.NewDesc("fsm_webhooks_serving_cert_lifetime_seconds",
		"The served certificate's lifetime, NotBefore to NotAfter: what its CA granted. It is renewed by 2/3 of it.", []string{"webhook", "secret"}, nil)
	readyDesc = prometheus.NewDesc("fsm_webhooks_ready",
		"1 when the webhook is ready in full (/readyz/<webhook>: serving, registered with a caBundle that verifies its cert, end-to-end probe passed), else 0.", []string{"webhook"}, nil)
)

// certCollector reports the certs served by every running Server at scrape
// time, so expiry seconds are always current.
type certCollector struct {
	mu      sync.Mutex
	servers map[*Server]struct{}
}

var collector = &certCollector{servers: map[*Server]struct{}{}}

func init() {
	metrics.Registry.MustRegister(renewals, caBundleRepairs, collector)
}

func registerCollector(s *Server) {
	collector.mu.Lock()
	defer collector.mu.Unlock()
	collector.servers[s] = struct{}{}
}

func unregisterCollector(s *Server) {
	collector.mu.Lock()
	defer collector.mu.Unlock()
	delete(collector.servers, s)
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- expiryDesc
	ch <- notAfterDesc
	ch <- lifetimeDesc
	ch <- readyDesc
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := map[string]bool{}
	now := time.Now()
	for s := range c.servers {
		for _, h := range s.hooks {
			// Several Servers in one process (tests) may serve the same
			// webhook; a metric is reported once.
			if seen[h.w.Name] {
				continue
			}
			seen[h.w.Name] = true
			ready := 0.0
			if h.ready(now) == nil {
				ready = 1
			}
			ch <- prometheus.MustNewConstMetric(readyDesc, prometheus.GaugeValue, ready, h.w.Name)
			l := h.src.Current()
			if l == nil {
				continue
			}
			na := l.Chain[0].NotAfter
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, na.Sub(now).Seconds(), h.w.Name, h.w.SecretName)
			ch <- prometheus.MustNewConstMetric(notAfterDesc, prometheus.GaugeValue, float64(na.Unix()), h.w.Name, h.w.SecretName)
			ch <- prometheus.MustNewConstMetric(lifetimeDesc, prometheus.GaugeValue, na.Sub(l.Chain[0].NotBefore).Seconds(), h.w.Name, h.w.SecretName)
		}
	}
}
